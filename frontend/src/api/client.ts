/**
 * The one HTTP client of the console: same-origin session cookie, JSON in and out,
 * the CSRF token on every state-changing request, and one error type for every failure.
 */

export interface ApiErrorBody {
  code: string;
  message: string;
  fields?: Record<string, string[]>;
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly fields: Record<string, string[]>;

  constructor(status: number, body: ApiErrorBody) {
    super(body.message);
    this.name = "ApiError";
    this.status = status;
    this.code = body.code;
    this.fields = body.fields ?? {};
  }
}

/** status 0: the request never got an HTTP answer (offline, DNS, aborted). */
export const NETWORK_ERROR = "network_error";

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

export type QueryValue = string | number | boolean | null | undefined;

export interface RequestOptions {
  query?: Record<string, QueryValue>;
  body?: unknown;
  signal?: AbortSignal;
}

export interface ApiClientOptions {
  baseUrl?: string;
  fetch?: typeof fetch;
  /** Called on a 401 from any endpoint but the sign-in ones: the session has ended. */
  onUnauthorized?: () => void;
}

export class ApiClient {
  private csrfToken: string | null = null;
  private readonly baseUrl: string;
  private readonly fetchImpl: typeof fetch;
  onUnauthorized: (() => void) | undefined;

  constructor(options: ApiClientOptions = {}) {
    this.baseUrl = options.baseUrl ?? "/api/v1";
    this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.onUnauthorized = options.onUnauthorized;
  }

  setCsrfToken(token: string | null): void {
    this.csrfToken = token;
  }

  get hasCsrfToken(): boolean {
    return this.csrfToken !== null;
  }

  get<T>(path: string, options: Omit<RequestOptions, "body"> = {}): Promise<T> {
    return this.request<T>("GET", path, options);
  }

  /** A POST always carries a JSON body (`{}` when there is nothing to say), which JSON endpoints expect. */
  post<T>(path: string, body: unknown = {}, options: Omit<RequestOptions, "body"> = {}): Promise<T> {
    return this.request<T>("POST", path, { ...options, body });
  }

  patch<T>(path: string, body: unknown, options: Omit<RequestOptions, "body"> = {}): Promise<T> {
    return this.request<T>("PATCH", path, { ...options, body });
  }

  delete<T>(path: string, options: Omit<RequestOptions, "body"> = {}): Promise<T> {
    return this.request<T>("DELETE", path, options);
  }

  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const upper = method.toUpperCase();
    const headers: Record<string, string> = { Accept: "application/json" };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    if (!SAFE_METHODS.has(upper) && this.csrfToken) headers["X-CSRF-Token"] = this.csrfToken;

    let response: Response;
    try {
      response = await this.fetchImpl(this.url(path, options.query), {
        method: upper,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        credentials: "same-origin",
        signal: options.signal,
      });
    } catch (cause) {
      if (cause instanceof DOMException && cause.name === "AbortError") throw cause;
      throw new ApiError(0, { code: NETWORK_ERROR, message: cause instanceof Error ? cause.message : String(cause) });
    }

    const payload = await readJson(response);
    if (!response.ok) {
      const error = new ApiError(response.status, parseErrorBody(response, payload));
      if (response.status === 401 && !path.startsWith("/auth/")) this.onUnauthorized?.();
      throw error;
    }
    return payload as T;
  }

  private url(path: string, query?: Record<string, QueryValue>): string {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null && value !== "") params.append(key, String(value));
    }
    const search = params.toString();
    return `${this.baseUrl}${path}${search ? `?${search}` : ""}`;
  }
}

async function readJson(response: Response): Promise<unknown> {
  if (response.status === 204) return null;
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** Reads `{"error": {"code", "message", "fields"}}`; anything else becomes `http_<status>`. */
export function parseErrorBody(response: Pick<Response, "status" | "statusText">, payload: unknown): ApiErrorBody {
  const error = isRecord(payload) ? payload.error : undefined;
  if (isRecord(error) && typeof error.code === "string") {
    return {
      code: error.code,
      message: typeof error.message === "string" ? error.message : response.statusText,
      fields: isRecord(error.fields) ? normaliseFields(error.fields) : {},
    };
  }
  return { code: `http_${response.status}`, message: response.statusText || `HTTP ${response.status}`, fields: {} };
}

function normaliseFields(fields: Record<string, unknown>): Record<string, string[]> {
  const result: Record<string, string[]> = {};
  for (const [name, messages] of Object.entries(fields)) {
    if (Array.isArray(messages)) result[name] = messages.map(String);
    else if (messages !== undefined && messages !== null) result[name] = [String(messages)];
  }
  return result;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function isApiError(error: unknown, code?: string): error is ApiError {
  return error instanceof ApiError && (code === undefined || error.code === code);
}

/** The application's client; stores and components import this one. */
export const api = new ApiClient();

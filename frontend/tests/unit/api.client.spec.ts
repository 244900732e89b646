import { describe, expect, it, vi } from "vitest";
import { ApiClient, ApiError, NETWORK_ERROR, authApi, conversationsApi, messagesApi } from "@/api";

function jsonResponse(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

function setup(response: Response | (() => Promise<Response>) = jsonResponse(200, {})) {
  const fetch = vi.fn<typeof globalThis.fetch>(async () => (typeof response === "function" ? response() : response.clone()));
  const onUnauthorized = vi.fn();
  const client = new ApiClient({ fetch, onUnauthorized });
  const headersOf = (call = 0) => (fetch.mock.calls[call]?.[1]?.headers ?? {}) as Record<string, string>;
  return { client, fetch, onUnauthorized, headersOf };
}

describe("ApiClient", () => {
  it("sends the CSRF token on state-changing requests only", async () => {
    const { client, fetch, headersOf } = setup();
    client.setCsrfToken("tok-123");
    await client.get("/conversations");
    await client.post("/conversations/1/claim");
    await client.patch("/conversations/1", { status: "resolved" });
    await client.delete("/things/1");
    expect(headersOf(0)["X-CSRF-Token"]).toBeUndefined();
    expect(headersOf(1)["X-CSRF-Token"]).toBe("tok-123");
    expect(headersOf(2)["X-CSRF-Token"]).toBe("tok-123");
    expect(headersOf(3)["X-CSRF-Token"]).toBe("tok-123");
    for (const call of fetch.mock.calls) expect(call[1]?.credentials).toBe("same-origin");
    expect(fetch.mock.calls[1]?.[1]?.body).toBe("{}");
  });

  it("sends no CSRF header before a session exists (sign-in)", async () => {
    const { client, headersOf } = setup(jsonResponse(200, { agent: {}, csrf_token: "new" }));
    await authApi.login("camille@agence.fr", "secret", client);
    expect(headersOf()["X-CSRF-Token"]).toBeUndefined();
  });

  it("builds URLs under /api/v1 with the query, skipping empty values", async () => {
    const { client, fetch } = setup(jsonResponse(200, { items: [], next_cursor: null, counts: {} }));
    await conversationsApi.list({ status: "open", assignee: "me", q: undefined, limit: 50 }, undefined, client);
    expect(fetch.mock.calls[0]?.[0]).toBe("/api/v1/conversations?status=open&assignee=me&limit=50");
  });

  it("posts JSON bodies", async () => {
    const { client, fetch, headersOf } = setup(jsonResponse(201, { id: 1 }));
    client.setCsrfToken("t");
    await messagesApi.send(4, { text: "Bonjour", kind: "note" }, client);
    expect(fetch.mock.calls[0]?.[0]).toBe("/api/v1/conversations/4/messages");
    expect(fetch.mock.calls[0]?.[1]?.method).toBe("POST");
    expect(fetch.mock.calls[0]?.[1]?.body).toBe('{"text":"Bonjour","kind":"note"}');
    expect(headersOf()["Content-Type"]).toBe("application/json");
  });

  it("parses the API error shape", async () => {
    const { client } = setup(
      jsonResponse(422, {
        error: {
          code: "reply_window_closed",
          message: "The 24 h window closed yesterday.",
          fields: { text: ["too long"] },
        },
      }),
    );
    const error = await client.post("/conversations/1/messages", { text: "x" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({
      status: 422,
      code: "reply_window_closed",
      message: "The 24 h window closed yesterday.",
      fields: { text: ["too long"] },
    });
  });

  it("survives error bodies that are not the API shape", async () => {
    const { client } = setup(new Response("<h1>Bad gateway</h1>", { status: 502, statusText: "Bad Gateway" }));
    await expect(client.get("/conversations")).rejects.toMatchObject({ status: 502, code: "http_502", fields: {} });
  });

  it("turns network failures into a network_error", async () => {
    const { client } = setup(() => Promise.reject(new TypeError("Failed to fetch")));
    await expect(client.get("/auth/me")).rejects.toMatchObject({ status: 0, code: NETWORK_ERROR });
  });

  it("reports an ended session on 401, but not for sign-in itself", async () => {
    const unauthorized = jsonResponse(401, { error: { code: "unauthorized", message: "Sign in" } });
    const { client, onUnauthorized } = setup(unauthorized);
    await expect(authApi.login("a@b.c", "bad", client)).rejects.toMatchObject({ status: 401 });
    expect(onUnauthorized).not.toHaveBeenCalled();
    await expect(conversationsApi.get(1, client)).rejects.toMatchObject({ code: "unauthorized" });
    expect(onUnauthorized).toHaveBeenCalledOnce();
  });
});

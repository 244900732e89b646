"""Platform adapters: pure translation between a platform's wire format and Relais' normalised events.

Adapters never import `inbox` and never touch the database: `verify` checks a signature over raw bytes,
`parse` turns a verified raw body into `InboundEvent`s, `send` / `moderate` talk to the platform through
`adapters.http.PlatformClient` (base URL configurable, so tests and the demo point it at a local fake).
"""

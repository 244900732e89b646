"""Local stand-ins for the social platforms, for tests, benchmarks and the demo: no network, no accounts.

`inbox.demo.fake_meta` serves a fake Graph API (the endpoints our Meta senders call) and posts realistic,
signed Messenger and Page feed webhooks to a running Relais.
"""

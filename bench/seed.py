"""Seed a freshly migrated database for a benchmark: tests.factories.build_world (a brand, its Facebook page
with app secret "test-app-secret", a team, agents) plus `--agents N` extra team agents, each with an API token.
Prints one JSON line: ids and clear tokens. Run with DATABASE_URL set and REDIS_URL empty."""
from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=0)
    args = parser.parse_args()

    from inbox import create_app
    from inbox.db import db
    from inbox.models import Agent, TeamMember
    from inbox.services.auth import create_api_token
    from tests.factories import PAGE_ID, build_world

    app = create_app(role="worker")
    with app.app_context():
        world = build_world()
        agent = db.session.get(Agent, world.agent_ids[world.agent])
        _, token = create_api_token(db.session, agent, "bench")
        tokens = []
        for i in range(args.agents):
            # no password (token auth only): argon2-hashing 100 passwords would take a minute
            extra = Agent(email=f"bench-agent-{i}@relais.test", name=f"Bench agent {i}", role="agent",
                          password_hash="!", availability="online")
            db.session.add(extra)
            db.session.flush()
            db.session.add(TeamMember(team_id=world.team_id, agent_id=extra.id))
            _, clear = create_api_token(db.session, extra, "bench")
            tokens.append(clear)
        db.session.commit()
        print(json.dumps({"brand_id": world.brand_id, "page_channel_id": world.page_channel_id,
                          "page_id": PAGE_ID, "agent_token": token, "agent_tokens": tokens}))


if __name__ == "__main__":
    main()

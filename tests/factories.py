"""Rows for tests, built through the services where one exists. Call inside an app context."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from sqlalchemy import text

from inbox.db import db
from inbox.models import Agent, Base, Brand, Team, TeamBrand, TeamMember
from inbox.services.auth import hash_password
from inbox.services.channels import create_channel, invalidate_cache

PASSWORD = "correct horse battery"
PAGE_ID = "1000000001"
OTHER_PAGE_ID = "2000000002"
APP_SECRET = "test-app-secret"
ACCESS_TOKEN = "EAAB-test-page-token"
VERIFY_TOKEN = "test-verify-token"


@dataclass
class World:
    brand_id: int
    other_brand_id: int
    team_id: int
    other_team_id: int
    page_channel_id: int
    other_page_channel_id: int
    api_channel_id: int
    api_secret: str
    admin: str = "admin@relais.test"
    supervisor: str = "sup@relais.test"
    agent: str = "agent@relais.test"
    agent2: str = "agent2@relais.test"
    outsider: str = "outsider@relais.test"
    agent_ids: dict[str, int] = field(default_factory=dict)


@functools.lru_cache(maxsize=8)
def _password_hash(password: str) -> str:
    """argon2 is slow on purpose: hash each test password once per run, not once per agent."""
    return hash_password(password)


def make_agent(email: str, role: str = "agent", name: str | None = None, team_ids: tuple[int, ...] = (),
               password: str = PASSWORD) -> Agent:
    agent = Agent(email=email, name=name or email.split("@")[0].title(), role=role,
                  password_hash=_password_hash(password), availability="online")
    db.session.add(agent)
    db.session.flush()
    for team_id in team_ids:
        db.session.add(TeamMember(team_id=team_id, agent_id=agent.id))
    return agent


def make_team(name: str, brand_ids: tuple[int, ...]) -> Team:
    team = Team(name=name)
    db.session.add(team)
    db.session.flush()
    for brand_id in brand_ids:
        db.session.add(TeamBrand(team_id=team.id, brand_id=brand_id))
    return team


def build_world(webhook_url: str | None = None) -> World:
    session = db.session
    brand = Brand(name="Maison Lune")
    other = Brand(name="Vélo Vert")
    session.add_all([brand, other])
    session.flush()
    page, _ = create_channel(session, brand_id=brand.id, kind="facebook_page", name="Maison Lune FB",
                             config={"page_id": PAGE_ID, "access_token": ACCESS_TOKEN, "app_secret": APP_SECRET,
                                     "verify_token": VERIFY_TOKEN})
    other_page, _ = create_channel(session, brand_id=other.id, kind="facebook_page", name="Vélo Vert FB",
                                   config={"page_id": OTHER_PAGE_ID, "access_token": ACCESS_TOKEN + "2",
                                           "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN + "2"})
    api, api_secrets = create_channel(session, brand_id=brand.id, kind="api", name="Boutique API",
                                      config={"webhook_url": webhook_url})
    team = make_team("Community", (brand.id,))
    other_team = make_team("Vélo team", (other.id,))
    world = World(brand_id=brand.id, other_brand_id=other.id, team_id=team.id, other_team_id=other_team.id,
                  page_channel_id=page.id, other_page_channel_id=other_page.id, api_channel_id=api.id,
                  api_secret=api_secrets["webhook_secret"])
    for email, role, teams in ((world.admin, "admin", ()), (world.supervisor, "supervisor", (team.id,)),
                               (world.agent, "agent", (team.id,)), (world.agent2, "agent", (team.id,)),
                               (world.outsider, "agent", (other_team.id,))):
        world.agent_ids[email] = make_agent(email, role, team_ids=teams).id
    session.commit()
    return world


def empty_database() -> None:
    """Delete every row (children first); used between tests."""
    session = db.new_session()
    try:
        if session.get_bind().dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                session.execute(table.delete())
        session.commit()
    finally:
        session.close()
    invalidate_cache()

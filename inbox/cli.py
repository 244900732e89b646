"""Flask CLI commands: `flask --app wsgi create-admin` and `flask --app wsgi bootstrap` (the administrator, and
on an empty database the demo: brands, teams, agents, channels, an SLA policy, canned replies and conversations).

Both are idempotent. Passwords that Relais generates are printed once and stored only as hashes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import click
from flask import Flask, current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inbox.db import db
from inbox.demo.conversations import seed_conversations
from inbox.models import Agent
from inbox.services import admin, sla
from inbox.services.canned_replies import create_canned_reply
from inbox.services.channels import create_channel, webhook_urls
from inbox.settings import get_settings

DEFAULT_ADMIN_EMAIL = "admin@example.com"  # bootstrap only, when neither --email nor RELAIS_ADMIN_EMAIL is set
DEMO_PAGES = {"Maison Lune": "1000000001", "Vélo Vert": "2000000002"}
DEMO_VERIFY_TOKEN = "demo-verify-token"
DEMO_AGENTS = (  # email, name, role, teams
    ("camille@example.com", "Camille Martin", "agent", ("Community",)),
    ("yanis@example.com", "Yanis Benali", "supervisor", ("Community", "SAV")),
)


@dataclass
class AdminOutcome:
    agent: Agent
    created: bool
    generated_password: str | None


def ensure_admin(session: Session, *, email: str | None, password: str | None, name: str | None,
                 default_email: str | None = None) -> AdminOutcome:
    """The administrator `email` (from the option, RELAIS_ADMIN_EMAIL or `default_email`), created when missing
    with the given password, RELAIS_ADMIN_PASSWORD, or a generated one. An existing agent with that email is
    left as is."""
    settings = get_settings()
    email = email or settings.admin_email or default_email
    if not email:
        raise click.UsageError("give --email or set RELAIS_ADMIN_EMAIL")
    existing = admin.find_agent_by_email(session, email)
    if existing is not None:
        return AdminOutcome(existing, False, None)
    agent, generated = admin.do_create_agent(session, email=email, name=name or "Administrator", role="admin",
                                             password=password or settings.admin_password)
    return AdminOutcome(agent, True, generated)


def _report_admin(outcome: AdminOutcome) -> None:
    agent = outcome.agent
    if not outcome.created:
        click.echo(f"{agent.email} already exists (role {agent.role}); nothing changed")
        return
    click.echo(f"created administrator {agent.email}")
    if outcome.generated_password:
        click.echo(f"  password: {outcome.generated_password}   (shown once: write it down)")


DEMO_SLA_POLICY = {"name": "Première réponse sous 1 h", "first_response_seconds": 3600,
                   "next_response_seconds": 4 * 3600, "resolution_seconds": 24 * 3600}
DEMO_CANNED_REPLIES = (  # shortcut, title, body, language
    ("merci", "Remerciement", 'Merci {{contact.first_name | ""}} pour votre message ! Nous regardons cela et revenons '
     "vers vous très vite. {{agent.first_name}}, {{brand.name}}", "fr"),
    ("suivi", "Suivi de commande", 'Bonjour {{contact.first_name | ""}}, pouvez-vous nous donner votre numéro de '
     "commande ? Nous vérifions tout de suite où en est votre colis.", "fr"),
    ("thanks", "Thank you", 'Thanks {{contact.first_name | "for reaching out"}}! We are looking into it and will get '
     "back to you shortly. {{agent.first_name}}, {{brand.name}}", "en"),
)


def demo_app_secret() -> str:
    return os.environ.get("DEMO_APP_SECRET") or "demo-app-secret"


def seed_demo(session: Session, admin_agent: Agent) -> list[str]:
    """Demo brands, teams, agents, channels, an SLA policy and canned replies (`admin_agent` creates the last
    two); returns the lines to print (generated secrets included)."""
    lines: list[str] = []
    brands = {name: admin.do_create_brand(session, name) for name in DEMO_PAGES}
    lines.append("brands: " + ", ".join(brands))
    teams = {
        "Community": admin.do_create_team(session, name="Community", brand_ids=[b.id for b in brands.values()]),
        "SAV": admin.do_create_team(session, name="SAV", brand_ids=[brands["Vélo Vert"].id]),
    }
    lines.append("teams: Community (Maison Lune, Vélo Vert), SAV (after-sales, Vélo Vert)")
    for email, name, role, team_names in DEMO_AGENTS:
        _agent, password = admin.do_create_agent(session, email=email, name=name, role=role,
                                                 team_ids=[teams[t].id for t in team_names])
        lines.append(f"{role} {email} ({', '.join(team_names)})  password: {password}")
    app_secret = demo_app_secret()
    for brand_name, page_id in DEMO_PAGES.items():
        channel, _ = create_channel(session, brand_id=brands[brand_name].id, kind="facebook_page",
                                    name=f"{brand_name} (Facebook)",
                                    config={"page_id": page_id, "access_token": f"demo-page-token-{page_id}",
                                            "app_secret": app_secret, "verify_token": DEMO_VERIFY_TOKEN})
        lines.append(f"facebook_page channel #{channel.id} {channel.name}: page {page_id}, "
                     f"callback {webhook_urls(channel)['callback_url']}, verify token {DEMO_VERIFY_TOKEN}")
    api_channel, api_secrets = create_channel(session, brand_id=brands["Maison Lune"].id, kind="api",
                                              name="Maison Lune (boutique API)", config={"webhook_url": None})
    lines.append(f"api channel #{api_channel.id} {api_channel.name}: inbound "
                 f"{webhook_urls(api_channel)['inbound_url']}, webhook secret {api_secrets['webhook_secret']}")
    from inbox.api.sla import SlaPolicyCreateSchema, policy_data  # the API's defaults (warning at 80%...)

    sla.create_policy(session, admin_agent, policy_data(SlaPolicyCreateSchema().load(DEMO_SLA_POLICY)))
    lines.append(f"SLA policy: {DEMO_SLA_POLICY['name']} (next response 4 h, resolution 24 h)")
    for shortcut, title, body, language in DEMO_CANNED_REPLIES:
        create_canned_reply(session, admin_agent, shortcut=shortcut, title=title, body=body, scope="global",
                            language=language)
    lines.append("canned replies: " + ", ".join(f"/{r[0]}" for r in DEMO_CANNED_REPLIES))
    return lines


def init_app(app: Flask) -> None:
    @app.cli.command("create-admin")
    @click.option("--email", help="defaults to RELAIS_ADMIN_EMAIL")
    @click.option("--password", help="defaults to RELAIS_ADMIN_PASSWORD, else one is generated and printed once")
    @click.option("--name", help="display name (default: Administrator)")
    def create_admin_command(email: str | None, password: str | None, name: str | None) -> None:
        """Create the administrator account (does nothing if it exists)."""
        with db.transaction() as session:
            outcome = ensure_admin(session, email=email, password=password, name=name)
        _report_admin(outcome)

    @app.cli.command("bootstrap")
    @click.option("--email", help=f"administrator email (defaults to RELAIS_ADMIN_EMAIL, else {DEFAULT_ADMIN_EMAIL})")
    @click.option("--password", help="administrator password (defaults to RELAIS_ADMIN_PASSWORD, else generated)")
    @click.option("--name", help="administrator display name")
    def bootstrap_command(email: str | None, password: str | None, name: str | None) -> None:
        """First run: the administrator and demo data, only when the database has no agent yet."""
        with db.transaction() as session:
            if session.execute(select(func.count()).select_from(Agent)).scalar_one():
                click.echo("database already initialised: nothing to do")
                return
            outcome = ensure_admin(session, email=email, password=password, name=name,
                                   default_email=DEFAULT_ADMIN_EMAIL)
            lines = seed_demo(session, outcome.agent)
            admin_email = outcome.agent.email
        lines += seed_conversations(current_app, pages=DEMO_PAGES, app_secret=demo_app_secret(),
                                    admin_email=admin_email)
        _report_admin(outcome)
        for line in lines:
            click.echo(line)

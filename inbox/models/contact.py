"""A person, and their identities on each network."""
from __future__ import annotations

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from inbox.models.base import Base, TimestampMixin


class Contact(TimestampMixin, Base):
    __tablename__ = "contacts"
    __table_args__ = (
        Index("ix_contacts_name_trgm", "name", postgresql_using="gin",
              postgresql_ops={"name": "gin_trgm_ops"}).ddl_if(dialect="postgresql"),
        Index("ix_contacts_handle_trgm", "handle", postgresql_using="gin",
              postgresql_ops={"handle": "gin_trgm_ops"}).ddl_if(dialect="postgresql"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str | None] = mapped_column(String(300))
    handle: Mapped[str | None] = mapped_column(String(300))
    avatar_url: Mapped[str | None] = mapped_column(String(2000))
    identities: Mapped[list["ContactIdentity"]] = relationship(back_populates="contact")

    @property
    def first_name(self) -> str | None:
        return self.name.split(" ")[0] if self.name else None


class ContactIdentity(TimestampMixin, Base):
    __tablename__ = "contact_identities"
    __table_args__ = (UniqueConstraint("channel_kind", "external_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    channel_kind: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(256))
    name: Mapped[str | None] = mapped_column(String(300))
    handle: Mapped[str | None] = mapped_column(String(300))
    avatar_url: Mapped[str | None] = mapped_column(String(2000))
    contact: Mapped[Contact] = relationship(back_populates="identities")

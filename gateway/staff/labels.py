"""Words for the values the staff pages show from data (registry statuses, act kinds, roles, colours).

The data keeps its English codes; pages show ``term(code)``: the label below
in the reader's language (an unknown code is shown as it is). The ``N_``
marks put every label into the ``staff`` catalog.
"""

from __future__ import annotations

from l10n import N_

__all__ = ["TERMS"]

TERMS: dict[str, str] = {
    # TRANSLATORS: a tablet's state in the registry: handed out to a responsible worker
    "issued": N_("issued"),
    # TRANSLATORS: a tablet's state in the registry: given back to the Department
    "returned": N_("returned"),
    "lost": N_("lost"),
    # TRANSLATORS: a tablet whose key the registry no longer trusts
    "revoked": N_("revoked"),
    # TRANSLATORS: a tablet that sends data but is not in the registry
    "unregistered": N_("unregistered"),
    "active": N_("active"),
    "disabled": N_("disabled"),
    "absent": N_("absent"),
    # TRANSLATORS: kind of acceptance-transfer act: the Department hands a tablet to a responsible worker
    "issue": N_("issue to a worker"),
    # TRANSLATORS: kind of acceptance-transfer act: a responsible worker hands a tablet back
    "return": N_("return by a worker"),
    "viewer": N_("viewer"),
    "admin": N_("administrator"),
    "green": N_("synced recently"),
    "amber": N_("quiet"),
    "red": N_("silent or never synced"),
    "grey": N_("not in service"),
    # TRANSLATORS: how a batch reached the gateway: sent by the tablet itself over the network (GLOSSARY: online)
    "online": N_("online"),
    # TRANSLATORS: an accessory handed over with a tablet
    "charger": N_("charger"),
    # TRANSLATORS: an accessory handed over with a tablet (protective case)
    "case": N_("case"),
    # TRANSLATORS: an accessory handed over with a tablet (GLOSSARY: USB cable = USB шнуры / USB-кабель)
    "cable": N_("USB cable"),
}

"""``sanaq-selfenum``: the respondents' online self-enumeration web service (DESIGN.md section 9).

A public aiohttp application, separate from the gateway: respondents enter an
access code, fill their census sheet in Kazakh, Russian or English, save and
resume, and submit during the online window. Each finished questionnaire is
sealed to the census data public key, signed with the service's enrolled key
as a batch of its own (road ``web:<id>``) and forwarded through ``gwclient``.
"""

from __future__ import annotations

__all__: list[str] = []

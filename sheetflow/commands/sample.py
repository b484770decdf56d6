"""Realistic, deterministic sample data: the demo, ``init --example``, tests and benchmarks share it.

English and Brazilian people, companies, titles, sizes, sources and dates, with the dirt real sheets
have (free-mailbox addresses, blank titles, missing sizes, some pt-BR decimal/date text). The same seed
always gives the same rows, so tests can assert on them.
"""

from __future__ import annotations

import datetime as dt
import random
import unicodedata
from typing import Any

FIRST_EN = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Emily",
    "Daniel",
    "Sarah",
    "Chris",
    "Laura",
    "Kevin",
    "Rachel",
    "Brian",
    "Megan",
    "Jason",
    "Olivia",
]
LAST_EN = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Miller",
    "Davis",
    "Wilson",
    "Taylor",
    "Clark",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Green",
    "Baker",
    "Adams",
    "Nelson",
]
FIRST_BR = [
    "João",
    "Maria",
    "José",
    "Ana",
    "Lucas",
    "Juliana",
    "Pedro",
    "Fernanda",
    "Gabriel",
    "Camila",
    "Rafael",
    "Beatriz",
    "Mateus",
    "Larissa",
    "Thiago",
    "Letícia",
    "Bruno",
    "Mariana",
    "Felipe",
    "Luíza",
]
LAST_BR = [
    "Silva",
    "Santos",
    "Oliveira",
    "Souza",
    "Rodrigues",
    "Ferreira",
    "Alves",
    "Pereira",
    "Lima",
    "Gomes",
    "Costa",
    "Ribeiro",
    "Martins",
    "Carvalho",
    "Araújo",
    "Melo",
    "Barbosa",
    "Conceição",
]
COMPANIES_EN = [
    "Acme Analytics",
    "Northwind Logistics",
    "Blue Harbor Foods",
    "Summit Health",
    "Brightline Media",
    "Granite Software",
    "Pioneer Freight",
    "Evergreen Energy",
    "Lakeside Retail",
    "Copperleaf Labs",
    "Redwood Insurance",
    "Silverpine Systems",
    "Oak & Iron Manufacturing",
    "Harborview Hotels",
]
COMPANIES_BR = [
    "Padaria Pão Dourado",
    "Construtora Horizonte",
    "Tecnologia Ipê",
    "Agro Cerrado",
    "Farmácia Vida",
    "Logística Rota Sul",
    "Escola Saber Mais",
    "Clínica Bem-Estar",
    "Moda Carioca",
    "Café Serra Azul",
    "Metalúrgica Paulista",
    "Banco Aurora",
]
TITLES_EN = [
    "CEO",
    "Director of Sales",
    "Head of Marketing",
    "VP Operations",
    "Marketing Manager",
    "Sales Representative",
    "Analyst",
    "Office Manager",
    "IT Director",
    "Procurement Lead",
    "Founder",
    "Intern",
    "",
]
TITLES_BR = [
    "Diretor Comercial",
    "Diretora de Marketing",
    "Gerente de Vendas",
    "Analista de Compras",
    "Coordenadora de TI",
    "Sócio-fundador",
    "CEO",
    "Assistente Administrativo",
    "Head de Produto",
    "",
]
INDUSTRIES = [
    "Software",
    "Retail",
    "Manufacturing",
    "Healthcare",
    "Logistics",
    "Education",
    "Finance",
    "Food & Beverage",
    "Energy",
    "Media",
]
SOURCES = ["website", "referral", "event", "linkedin", "cold call", "webinar", "partner"]
FREE_MAIL = ["gmail.com", "hotmail.com", "yahoo.com", "outlook.com", "uol.com.br", "bol.com.br"]
SIZES = [3, 8, 15, 40, 75, 120, 250, 600, 1500, 5000]

REPS = [
    {
        "name": "Ana Souza",
        "email": "ana@example.com",
        "active": True,
        "weight": 3,
        "capacity": 400,
        "territory": "Brazil",
    },
    {
        "name": "Bruno Lima",
        "email": "bruno@example.com",
        "active": True,
        "weight": 2,
        "capacity": 300,
        "territory": "Brazil",
    },
    {
        "name": "Carol White",
        "email": "carol@example.com",
        "active": True,
        "weight": 2,
        "capacity": 300,
        "territory": "North America",
    },
    {
        "name": "Dave Miller",
        "email": "dave@example.com",
        "active": False,
        "weight": 1,
        "capacity": 200,
        "territory": "North America",
    },
    {
        "name": "Eve Martin",
        "email": "eve@example.com",
        "active": True,
        "weight": 1,
        "capacity": 200,
        "territory": "Europe",
    },
]
STAGES = [
    {"stage": "New", "order": 1, "probability": 10, "won": False, "lost": False, "rotting_days": 7},
    {"stage": "Qualified", "order": 2, "probability": 25, "won": False, "lost": False, "rotting_days": 14},
    {"stage": "Proposal", "order": 3, "probability": 50, "won": False, "lost": False, "rotting_days": 14},
    {"stage": "Negotiation", "order": 4, "probability": 75, "won": False, "lost": False, "rotting_days": 10},
    {"stage": "Won", "order": 5, "probability": 100, "won": True, "lost": False, "rotting_days": None},
    {"stage": "Lost", "order": 6, "probability": 0, "won": False, "lost": True, "rotting_days": None},
]
COUNTRIES = {"en": ["United States", "United Kingdom", "Canada", "Ireland"], "br": ["Brazil"]}


def _ascii(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _slug(text: str) -> str:
    return "".join(ch for ch in _ascii(text).lower() if ch.isalnum())


def contacts(
    n: int, *, seed: int = 7, today: dt.date = dt.date(2026, 11, 23), with_ids: bool = True
) -> list[dict[str, Any]]:
    """``n`` contacts; about 40% Brazilian. Ids are C-00001.. unless ``with_ids`` is False."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        br = rnd.random() < 0.4
        first = rnd.choice(FIRST_BR if br else FIRST_EN)
        last = rnd.choice(LAST_BR if br else LAST_EN)
        company = rnd.choice(COMPANIES_BR if br else COMPANIES_EN)
        if rnd.random() < 0.2:
            domain = rnd.choice(FREE_MAIL)
        else:
            domain = _slug(company)[:18] + (".com.br" if br else ".com")
        created = today - dt.timedelta(days=rnd.randint(0, 400))
        last_activity = created + dt.timedelta(days=rnd.randint(0, max(0, (today - created).days)))
        row: dict[str, Any] = {
            "id": f"C-{i + 1:05d}" if with_ids else None,
            "first_name": first,
            "last_name": last,
            "email": f"{_slug(first)}.{_slug(last)}{i}@{domain}",
            "phone": (
                f"+55 11 9{rnd.randint(1000, 9999)}-{rnd.randint(1000, 9999)}"
                if br
                else f"+1 555 {rnd.randint(100, 999)} {rnd.randint(1000, 9999)}"
            ),
            "company": company,
            "title": rnd.choice(TITLES_BR if br else TITLES_EN),
            "company_size": rnd.choice(SIZES) if rnd.random() > 0.1 else None,
            "industry": rnd.choice(INDUSTRIES),
            "country": rnd.choice(COUNTRIES["br" if br else "en"]),
            "source": rnd.choice(SOURCES),
            "created_at": created,
            "last_activity_at": last_activity if rnd.random() > 0.15 else None,
            "unsubscribed": rnd.random() < 0.05,
            "score": None,
            "lifecycle_stage": rnd.choice(["", "", "lead", "lead", "subscriber", "customer"]),
            "owner": None,
        }
        rows.append(row)
    return rows


def deals(
    contact_rows: list[dict[str, Any]], n: int, *, seed: int = 11, today: dt.date = dt.date(2026, 11, 23)
) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        c = rnd.choice(contact_rows)
        stage = rnd.choice(STAGES)["stage"]
        created = today - dt.timedelta(days=rnd.randint(0, 200))
        out.append(
            {
                "id": f"D-{i + 1:05d}",
                "contact_id": c["id"],
                "name": f"{c['company']} — {rnd.choice(['Annual plan', 'Pilot', 'Expansion', 'Renewal', 'Licenças'])}",
                "stage": stage,
                "amount": rnd.choice([1200, 4800, 9900, 25000, 60000]),
                "owner": rnd.choice([r["name"] for r in REPS if r["active"]]) if rnd.random() < 0.7 else None,
                "created_at": created,
                "expected_close": created + dt.timedelta(days=rnd.randint(15, 120)),
                "renewal_date": (created + dt.timedelta(days=365)) if stage == "Won" else None,
            }
        )
    return out


def tickets(
    contact_rows: list[dict[str, Any]], n: int, *, seed: int = 13, today: dt.date = dt.date(2026, 11, 23)
) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = []
    subjects = [
        "Cannot log in",
        "Invoice question",
        "Erro ao exportar relatório",
        "Feature request",
        "Integração com WhatsApp",
        "Password reset",
        "Slow dashboard",
    ]
    for i in range(n):
        c = rnd.choice(contact_rows)
        opened = dt.datetime.combine(today, dt.time(9)) - dt.timedelta(hours=rnd.randint(1, 24 * 20))
        status = rnd.choice(["open", "open", "pending", "resolved", "closed"])
        out.append(
            {
                "id": f"T-{i + 1:05d}",
                "contact_id": c["id"],
                "subject": rnd.choice(subjects),
                "severity": rnd.choice(["low", "normal", "normal", "high", "urgent"]),
                "status": status,
                "opened_at": opened,
                "resolved_at": opened + dt.timedelta(hours=rnd.randint(1, 72))
                if status in ("resolved", "closed")
                else None,
                "owner": None,
            }
        )
    return out

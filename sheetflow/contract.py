"""The workbook contract (../shared/WORKBOOK.md) as data: sheets, columns, types, aliases, managed cells.

Everything else asks this module what a sheet is called, what its columns mean and which cells
sheetflow may write; nothing else hard-codes a sheet or column name. pt-BR names are aliases of the
English canonical ones: reading accepts both, and ``sheetflow init --lang pt-BR`` writes the Portuguese
labels (``label(..., "pt-BR")``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from sheetflow.coltypes import ColumnType
from sheetflow.names import normalize

T, N, D, B = ColumnType.TEXT, ColumnType.NUMBER, ColumnType.DATE, ColumnType.BOOL


class Kind(str, Enum):
    DATA = "data"  # the team's records
    RULES = "rules"  # how the team automates
    OUTPUT = "output"  # written by sheetflow, appended, never rewritten
    SYSTEM = "system"  # sheetflow's own (hidden state)


@dataclass(frozen=True)
class Column:
    name: str  # canonical, normalized
    type: ColumnType = T
    pt: str = ""  # pt-BR label used by `init --lang pt-BR`
    aliases: tuple[str, ...] = ()  # other accepted spellings (en and pt-BR)
    width: float = 14  # starter-workbook column width
    managed: bool = False  # sheetflow may write it


@dataclass(frozen=True)
class SheetSpec:
    name: str  # canonical, e.g. "Contacts"
    kind: Kind
    columns: tuple[Column, ...]
    pt: str = ""
    aliases: tuple[str, ...] = ()
    id_prefix: str = ""  # for records: prefix of generated ids
    optional: tuple[Column, ...] = ()  # known, typed columns that starter sheets do not include

    def column(self, name: str) -> Column | None:
        """The contract column a header or name stands for (canonical name or alias, see header_key)."""
        index = _column_index(self)
        found = index.get(normalize(name))
        if found is None:
            key = header_key(name)
            found = index.get(key) or _compact_index(self).get(key.replace("_", ""))
        return found

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _c(
    name: str, type_: ColumnType = T, pt: str = "", *aliases: str, width: float = 14, managed: bool = False
) -> Column:
    return Column(name, type_, pt, aliases, width, managed)


SHEETS: tuple[SheetSpec, ...] = (
    SheetSpec(
        "Contacts",
        Kind.DATA,
        (
            _c("id", T, "id", "codigo", "código", width=10, managed=True),
            _c("first_name", T, "Nome", "primeiro_nome", "firstname", "given_name"),
            _c("last_name", T, "Sobrenome", "ultimo_nome", "lastname", "surname", "family_name"),
            _c("email", T, "E-mail", "e_mail", "mail", "email_address", width=28),
            _c("phone", T, "Telefone", "celular", "fone", "whatsapp", "phone_number"),
            _c("company", T, "Empresa", "company_name", "organizacao", "organization", width=22),
            _c("title", T, "Cargo", "job_title", "funcao", width=22),
            _c(
                "company_size",
                N,
                "Tamanho da empresa",
                "tamanho_empresa",
                "funcionarios",
                "employees",
                "numero_de_funcionarios",
            ),
            _c("industry", T, "Setor", "segmento", "industria"),
            _c("country", T, "País", "pais"),
            _c("source", T, "Origem", "fonte", "lead_source"),
            _c("created_at", D, "Criado em", "data_de_criacao", "data_criacao", "created"),
            _c("last_activity_at", D, "Última atividade", "ultima_atividade_em", "last_activity"),
            _c(
                "unsubscribed",
                B,
                "Descadastrado",
                "descadastrada",
                "opt_out",
                "optout",
                "opted_out",
                "email_opt_out",  # Salesforce "Email Opt Out" (HasOptedOutOfEmail)
                "has_opted_out_of_email",
                "opted_out_of_email",
                "unsubscribed_from_all_email",  # HubSpot "Unsubscribed from all email"
                "unsubscribed_from_email",
                "unsubscribe",
                "blacklist",  # Odoo "Blacklist" (is_blacklisted)
                "blacklisted",
                "is_blacklisted",
                "lista_negra",  # Odoo pt-BR
                "na_lista_negra",
                "cancelou_inscricao",
                "cancelou_a_inscricao",
                "inscricao_cancelada",
                "descadastrou",
                "descadastrou_se",
                "optou_por_sair",
                "nao_quer_receber_emails",
            ),
            _c("score", N, "Pontuação", "pontuacao", "pontos", "lead_score", managed=True, width=9),
            _c(
                "lifecycle_stage",
                T,
                "Estágio",
                "estagio",
                "fase",
                "lifecycle",
                "etapa_do_ciclo",
                "estagio_do_ciclo_de_vida",
                managed=True,
            ),
            _c("owner", T, "Responsável", "responsavel", "dono", "proprietario", "vendedor", managed=True),
            _c("assigned_at", D, "Atribuído em", "atribuido_em", managed=True),
            _c("last_emailed_at", D, "Último e-mail em", "ultimo_email_em", managed=True),
        ),
        pt="Contatos",
        aliases=("Leads", "Contatos", "Clientes"),
        id_prefix="C-",
        optional=(
            _c("nps", N, "NPS", "nota_nps"),
            _c("replied_at", D, "Respondeu em", "respondido_em", "respondeu_em"),
            _c("last_reply_at", D, "Última resposta em", "ultima_resposta_em"),
            _c(
                "do_not_contact",
                B,
                "Não contatar",
                "nao_contatar",
                "nao_entrar_em_contato",
                "nao_contactar",
                "nao_perturbe",
                "nao_enviar_email",
                "nao_enviar_emails",
                "nao_receber_emails",
                "do_not_email",
                "do_not_mail",
                "dnc",
            ),
            _c(
                "bounced",
                B,
                "E-mail devolvido",
                "email_devolvido",
                "devolvido",
                "email_retornado",
                "bounce",
                "hard_bounce",
                "hard_bounced",
                "email_bounced",
                "email_hard_bounced",  # HubSpot
                "email_bounced_date",  # Salesforce EmailBouncedDate
                "email_bounced_reason",  # Salesforce EmailBouncedReason
            ),
        ),
    ),
    SheetSpec(
        "Deals",
        Kind.DATA,
        (
            _c("id", T, "id", "codigo", width=10, managed=True),
            _c("contact_id", T, "id_contato", "contato_id", "contato"),
            _c("name", T, "nome", "negocio", "titulo", width=26),
            _c("stage", T, "etapa", "estagio", "fase"),
            _c("amount", N, "valor", "montante", "value"),
            _c("owner", T, "responsavel", "dono", "vendedor", managed=True),
            _c("created_at", D, "Criado em", "data_de_criacao"),
            _c("expected_close", D, "fechamento_previsto", "previsao_de_fechamento", "close_date"),
            _c("renewal_date", D, "data_de_renovacao", "renovacao", "renovação"),
            _c("stage_changed_at", D, "etapa_alterada_em", "mudou_de_etapa_em", managed=True),
        ),
        pt="Negócios",
        aliases=("Negocios", "Oportunidades", "Opportunities", "Pipeline"),
        id_prefix="D-",
    ),
    SheetSpec(
        "Tickets",
        Kind.DATA,
        (
            _c("id", T, "id", "codigo", width=10, managed=True),
            _c("contact_id", T, "id_contato", "contato_id", "contato"),
            _c("subject", T, "assunto", "titulo", width=30),
            _c("severity", T, "severidade", "prioridade", "priority"),
            _c("status", T, "situacao", "situação", "estado"),
            _c("opened_at", D, "aberto_em", "aberto", "data_de_abertura"),
            _c("resolved_at", D, "resolvido_em", "data_de_resolucao"),
            _c("owner", T, "responsavel", "dono", "atendente", managed=True),
            _c("due_at", D, "prazo", "vence_em", "vencimento", managed=True),
            _c("escalated_at", D, "escalado_em", managed=True),
        ),
        pt="Chamados",
        aliases=("Chamados", "Suporte", "Support", "Cases"),
        id_prefix="T-",
    ),
    SheetSpec(
        "Reps",
        Kind.DATA,
        (
            _c("name", T, "nome", "vendedor", width=18),
            _c("email", T, "E-mail", "e_mail", width=26),
            _c("active", B, "ativo", "ativa"),
            _c("weight", N, "peso"),
            _c("capacity", N, "capacidade"),
            _c("territory", T, "territorio", "território", "regiao", "região"),
            _c("away_from", D, "ausente_de", "ausente_desde", "ferias_de"),
            _c("away_until", D, "ausente_ate", "ausente_até", "ferias_ate"),
        ),
        pt="Vendedores",
        aliases=("Representantes", "Equipe", "Team", "Users"),
    ),
    SheetSpec(
        "Stages",
        Kind.DATA,
        (
            _c("stage", T, "etapa", "estagio", width=18),
            _c("order", N, "ordem"),
            _c("probability", N, "probabilidade"),
            _c("won", B, "ganho", "ganha"),
            _c("lost", B, "perdido", "perdida"),
            _c("rotting_days", N, "dias_parado", "dias_sem_movimento"),
        ),
        pt="Etapas",
        aliases=("Estagios", "Estágios", "Pipeline_stages"),
    ),
    SheetSpec(
        "Holidays",
        Kind.DATA,
        (
            _c("date", D, "data", "dia", width=12),
            _c("name", T, "nome", "feriado", width=24),
        ),
        pt="Feriados",
        aliases=("Feriados", "Holiday"),
    ),
    SheetSpec(
        "Scoring",
        Kind.RULES,
        (
            _c("rule", T, "regra", "nome", width=24),
            _c("when", T, "quando", "condicao", "condição", width=60),
            _c("points", N, "pontos"),
            _c("enabled", B, "ativo", "ativa", "habilitado", width=10),
        ),
        pt="Pontuação",
        aliases=("Pontuacao", "Lead_scoring", "Score"),
    ),
    SheetSpec(
        "Assignment",
        Kind.RULES,
        (
            _c("rule", T, "regra", "nome", width=24),
            _c("table", T, "tabela", "planilha", width=12),
            _c("when", T, "quando", "condicao", width=44),
            _c("assign_to", T, "atribuir_a", "para", width=22),
            _c("method", T, "metodo", "método", width=16),
            _c("enabled", B, "ativo", "ativa", "habilitado", width=10),
        ),
        pt="Atribuição",
        aliases=("Atribuicao", "Routing", "Distribuicao", "Distribuição"),
    ),
    SheetSpec(
        "Automations",
        Kind.RULES,
        (
            _c("rule", T, "regra", "nome", width=24),
            _c("table", T, "tabela", "planilha", width=12),
            _c("trigger", T, "gatilho", "disparo", width=22),
            _c("when", T, "quando", "condicao", width=40),
            _c("action", T, "acao", "ação", width=14),
            _c("params", T, "parametros", "parâmetros", width=36),
            _c("delay", T, "atraso", "espera", width=8),
            _c("enabled", B, "ativo", "ativa", "habilitado", width=10),
        ),
        pt="Automações",
        aliases=("Automacoes", "Workflows", "Fluxos"),
    ),
    SheetSpec(
        "Sequences",
        Kind.RULES,
        (
            _c("sequence", T, "sequencia", "sequência", "cadencia", width=20),
            _c("step", N, "passo", "etapa"),
            _c("delay_days", N, "dias_de_espera", "dias", "espera_dias"),
            _c("template", T, "modelo", width=20),
            _c("stop_when", T, "parar_quando", width=40),
        ),
        pt="Sequências",
        aliases=("Sequencias", "Cadences", "Cadencias"),
    ),
    SheetSpec(
        "Templates",
        Kind.RULES,
        (
            _c("name", T, "nome", width=20),
            _c("subject", T, "assunto", width=36),
            _c("body", T, "corpo", "mensagem", "texto", width=70),
            _c("language", T, "idioma", "lingua"),
        ),
        pt="Modelos",
        aliases=("Modelos_de_email", "Email_templates"),
    ),
    SheetSpec(
        "Settings",
        Kind.RULES,
        (
            _c("key", T, "chave", "configuracao", "configuração", "parametro", width=22),
            _c("value", T, "valor", width=34),
        ),
        pt="Configurações",
        aliases=("Configuracoes", "Config", "Ajustes"),
    ),
    SheetSpec(
        "Emails",
        Kind.OUTPUT,
        (
            _c("queued_at", D, "enfileirado_em", width=17),
            _c("sent_at", D, "enviado_em", width=17),
            _c("to", T, "para", "destinatario", width=26),
            _c("template", T, "modelo"),
            _c("subject", T, "assunto", width=30),
            _c("table", T, "tabela"),
            _c("record_id", T, "id_registro", "registro"),
            _c("rule", T, "regra", width=20),
            _c("status", T, "situacao", "situação"),
            _c("detail", T, "detalhe", "detalhes", width=30),
            _c("message_id", T, "id_mensagem", width=30),
            _c("key", T, "chave", width=20),
        ),
        pt="E-mails",
        aliases=("Email_log",),
    ),
    SheetSpec(
        "Activity",
        Kind.OUTPUT,
        (
            _c("at", D, "em", "quando", "data", width=17),
            _c("run_id", T, "execucao", "execução", "id_execucao", width=22),
            _c("table", T, "tabela", width=10),
            _c("record_id", T, "id_registro", "registro", width=10),
            _c("column", T, "coluna", width=16),
            _c("old", T, "antes", "valor_antigo", width=16),
            _c("new", T, "depois", "valor_novo", width=16),
            _c("rule", T, "regra", width=40),
        ),
        pt="Atividade",
        aliases=("Atividades", "Log", "Audit"),
    ),
    SheetSpec(
        "Tasks",
        Kind.OUTPUT,
        (
            _c("created_at", D, "criada_em", "criado_em", width=17),
            _c("due_at", D, "prazo", "vence_em", width=17),
            _c("owner", T, "responsavel", "dono"),
            _c("table", T, "tabela"),
            _c("record_id", T, "id_registro", "registro"),
            _c("text", T, "texto", "descricao", "descrição", "tarefa", width=40),
            _c("rule", T, "regra", width=20),
            _c("done", B, "feita", "feito", "concluida", "concluída"),
        ),
        pt="Tarefas",
        aliases=("Tarefas", "To_do", "Todo"),
    ),
    SheetSpec(
        "Runs",
        Kind.OUTPUT,
        (
            _c("run_id", T, "execucao", "id_execucao", width=22),
            _c("started_at", D, "iniciado_em", "inicio", width=19),
            _c("finished_at", D, "terminado_em", "fim", width=19),
            _c("mode", T, "modo"),
            _c("trigger", T, "origem", "gatilho"),
            _c("counts", T, "contagens", "resultado", width=44),
            _c("errors", T, "erros", "problemas", width=60),
        ),
        pt="Execuções",
        aliases=("Execucoes", "Run_log", "Historico", "Histórico"),
    ),
    SheetSpec(
        "Enrollments",
        Kind.OUTPUT,
        (
            _c("sequence", T, "sequencia", "sequência", "cadencia", width=18),
            _c("contact_id", T, "id_contato", "contato_id", width=10),
            _c("contact", T, "contato", "nome", width=26),
            _c("step", T, "passo", "etapa", width=10),
            _c("next_step_at", D, "proximo_passo_em", "próximo_passo_em", "proximo_passo", width=17),
            _c("status", T, "situacao", "situação", width=10),
            _c("reason", T, "motivo", width=30),
            _c("enrolled_at", D, "inscrito_em", "inscricao_em", width=17),
            _c("updated_at", D, "atualizado_em", width=17),
            _c("rule", T, "regra", width=22),
            _c("key", T, "chave", width=16),
        ),
        pt="Inscrições",
        aliases=("Inscricoes", "Sequence_status", "Enrolments"),
    ),
    SheetSpec("Report", Kind.OUTPUT, (), pt="Relatório", aliases=("Relatorio", "Dashboard", "Painel")),
    # the button/menu panel; its fixed layout lives in sheetflow/control.py
    SheetSpec("Control", Kind.OUTPUT, (), pt="Controle", aliases=("Controle", "Painel_de_controle")),
    SheetSpec(
        "_sheetflow_state",
        Kind.SYSTEM,
        (
            _c("section", T),
            _c("key", T),
            _c("value", T),
        ),
    ),
)

STATE_SHEET = "_sheetflow_state"

# Contacts columns that withhold every email to the contact's address. They fail closed: any value that is
# not clearly "no" (blank, FALSE, 0, no/não, see coerce.parse_consent) counts as "do not contact".
CONSENT_COLUMNS = ("unsubscribed", "do_not_contact", "bounced")
RECORD_SHEETS = ("Contacts", "Deals", "Tickets")

# Headers that are no alias but still plainly about email consent ("Opted out of newsletter?",
# "Unsubscribed (marketing)", "Bounce status", "Não contatar por e-mail"): when in doubt about consent, do not
# send, so such a column counts as the field it looks like. Links and URLs (an unsubscribe link) do not.
_CONSENT_LOOKS = (
    (
        "unsubscribed",
        re.compile(r"unsubscri|opt_?(ed_?)?out|descadastr|blacklist|lista_negra|cancel\w*_inscri"),
    ),
    (
        "do_not_contact",
        re.compile(r"do_?not_?(contact|e_?mail|mail)|nao_(contat|contact|enviar|receber|perturb)|^dnc"),
    ),
    ("bounced", re.compile(r"bounce|devolvid|retornad")),
)
_NOT_CONSENT = re.compile(r"link|url|token|(^|_)count|contagem|quantidade")


def consent_like(header: object) -> str | None:
    """The consent field a header that is no contract name or alias plainly means, or None."""
    key = header_key(header)
    if not key or _NOT_CONSENT.search(key):
        return None
    return next((name for name, pattern in _CONSENT_LOOKS if pattern.search(key)), None)


BY_NAME: dict[str, SheetSpec] = {s.name: s for s in SHEETS}

# Lifecycle stages (Contacts.lifecycle_stage) in contract order, with pt-BR labels.
LIFECYCLE = ("subscriber", "lead", "mql", "sql", "opportunity", "customer", "evangelist", "churned", "other")
LIFECYCLE_PT = {
    "subscriber": "assinante",
    "lead": "lead",
    "mql": "mql",
    "sql": "sql",
    "opportunity": "oportunidade",
    "customer": "cliente",
    "evangelist": "evangelista",
    "churned": "perdido",
    "other": "outro",
}
_LIFECYCLE_ALIASES = {
    **{normalize(v): k for k, v in LIFECYCLE_PT.items()},
    **{k: k for k in LIFECYCLE},
    "inscrito": "subscriber",
    "cancelado": "churned",
    "churn": "churned",
    "marketing_qualified_lead": "mql",
    "sales_qualified_lead": "sql",
}


# "Open" records (contract): tickets whose status is not one of these (normalized) count as open.
CLOSED_TICKET_STATUSES = frozenset(
    {"resolved", "closed", "resolvido", "resolvida", "fechado", "fechada", "done", "concluido", "concluida"}
)


def lifecycle_value(text: object) -> str | None:
    """Canonical lifecycle stage for what a user typed (``Cliente`` -> ``customer``); None if unknown."""
    if text is None:
        return None
    return _LIFECYCLE_ALIASES.get(normalize(text))


def lifecycle_label(stage: str, lang: str) -> str:
    return LIFECYCLE_PT.get(stage, stage) if lang.lower().startswith("pt") else stage


def label(spec_or_col: SheetSpec | Column, lang: str) -> str:
    """What `init` writes as the sheet name / header in the given language."""
    if lang.lower().startswith("pt") and spec_or_col.pt:
        return spec_or_col.pt
    return spec_or_col.name


_col_cache: dict[str, dict[str, Column]] = {}


def _column_index(spec: SheetSpec) -> dict[str, Column]:
    """normalized name or alias -> Column; canonical names win over aliases."""
    index = _col_cache.get(spec.name)
    if index is None:
        index = {}
        every = (*spec.columns, *spec.optional)
        for col in every:
            for alias in (col.pt, *col.aliases):
                if alias:
                    index.setdefault(normalize(alias), col)
        for col in every:
            index[col.name] = col
        _col_cache[spec.name] = index
    return index


def column_aliases(spec: SheetSpec) -> dict[str, str]:
    """normalized alias -> canonical column, for the rule compiler's Schema."""
    return {alias: col.name for alias, col in _column_index(spec).items() if alias != col.name}


# What people add around a column name in a header: a question mark or colon ("Unsubscribed?",
# "Bounced:"), a required-field star, a parenthesised remark or gender ending ("Descadastrado(a)",
# "Email (work)"). Dropped before matching, so the contract names match the way people type headers.
_HEADER_SUFFIX = re.compile(r"(\s*\([^()]*\)|\s*\[[^\[\]]*\]|[\s?!:*#.;,]+)+$")


def header_key(text: object) -> str:
    """:func:`normalize` of a header without trailing punctuation or a parenthesised suffix:
    ``"Unsubscribed?"`` -> ``"unsubscribed"``, ``"Descadastrado(a)"`` -> ``"descadastrado"``,
    ``"Não contatar?"`` -> ``"nao_contatar"``. A header that is only punctuation keeps its plain key."""
    raw = str(text).strip()
    stripped = _HEADER_SUFFIX.sub("", raw)
    return normalize(stripped) if stripped.strip() else normalize(raw)


_compact_cache: dict[str, dict[str, Column]] = {}


def _compact_index(spec: SheetSpec) -> dict[str, Column]:
    """Names and aliases without separators (``"Un subscribed"``, ``"EmailOptOut"``, ``"HasOptedOutOfEmail"``
    are typed with spaces in odd places or none); a compact key two columns share is left out."""
    index = _compact_cache.get(spec.name)
    if index is None:
        index = {}
        clash: set[str] = set()
        for key, col in _column_index(spec).items():
            compact = key.replace("_", "")
            if index.get(compact, col) is not col:
                clash.add(compact)
            index.setdefault(compact, col)
        for key in clash:
            index.pop(key, None)
        _compact_cache[spec.name] = index
    return index


_SHEET_INDEX: dict[str, SheetSpec] = {}
for _spec in SHEETS:
    for _alias in (_spec.pt, *_spec.aliases):
        if _alias:
            _SHEET_INDEX.setdefault(normalize(_alias), _spec)
for _spec in SHEETS:
    _SHEET_INDEX[normalize(_spec.name)] = _spec


HEADER_SEARCH_ROWS = 50  # a header lower than this is not looked for: titles and notes are a few rows


def row_filled(row: list[object]) -> bool:
    """Whether a sheet row has any value (a row of blanks is not a record, nor a header)."""
    return any(v not in (None, "") for v in row)


def known_name_count(row: Iterable[object], spec: SheetSpec) -> int:
    """How many cells of a row name a column of the sheet (canonical names and aliases)."""
    return sum(
        1
        for v in row
        if isinstance(v, str) and v.strip() and len(v) <= 80 and spec.column(v.strip()) is not None
    )


def find_header(rows: list[list[object]], spec: SheetSpec) -> int | None:
    """Index in ``rows`` of the header: among the first ``HEADER_SEARCH_ROWS`` rows, the one with the most
    cells naming a known column (the first such row on ties). A sheet kind without contract columns
    (Report) has its first non-empty row as header. None: no row names any known column."""
    if not spec.columns:
        return next((i for i, row in enumerate(rows) if row_filled(row)), None)
    best, best_count = None, 0
    for i, row in enumerate(rows[:HEADER_SEARCH_ROWS]):
        count = known_name_count(row, spec)
        if count > best_count:
            best, best_count = i, count
    return best


def sheet_spec(name: str) -> SheetSpec | None:
    """The contract sheet a workbook sheet name stands for (``Contatos`` -> Contacts), if any."""
    return _SHEET_INDEX.get(normalize(name))


def all_sheet_names() -> list[str]:
    return list(_SHEET_INDEX)


# Settings keys sheetflow knows, with their defaults (as text, parsed by settings.py).
@dataclass(frozen=True)
class SettingSpec:
    key: str
    default: str
    help: str
    pt: tuple[str, ...] = field(default_factory=tuple)


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("timezone", "UTC", "IANA time zone of the team, e.g. America/Sao_Paulo", ("fuso_horario",)),
    SettingSpec(
        "locale", "en-US", "en-US (dates mm/dd/yyyy), en-GB or pt-BR (dates dd/mm/yyyy)", ("idioma_regional",)
    ),
    SettingSpec("mql_threshold", "50", "score at which a lead becomes an MQL", ("limite_mql",)),
    SettingSpec("sql_threshold", "80", "score at which an MQL becomes an SQL", ("limite_sql",)),
    SettingSpec("sender_name", "", "From name of emails", ("nome_remetente",)),
    SettingSpec("sender_email", "", "From address of emails", ("email_remetente",)),
    SettingSpec("reply_to", "", "Reply-To address of emails", ("responder_para",)),
    SettingSpec("send_window", "Mon-Fri 09:00-18:00", "when emails may go out", ("janela_de_envio",)),
    SettingSpec("daily_email_limit", "200", "most emails sent per day", ("limite_diario_de_emails",)),
    SettingSpec(
        "fallback_owner", "", "who gets a task when no rep can take a record", ("responsavel_padrao",)
    ),
    SettingSpec(
        "backups", "10", "how many workbook backups to keep in .sheetflow/", ("copias_de_seguranca",)
    ),
    SettingSpec(
        "catch_up_days",
        "7",
        "a date: trigger missed for at most this many days still fires",
        ("dias_de_recuperacao",),
    ),
    SettingSpec(
        "business_hours", "Mon-Fri 09:00-18:00", "support hours for ticket SLAs", ("horario_comercial",)
    ),
    SettingSpec(
        "sla_hours_urgent", "4", "business hours to resolve an urgent ticket", ("sla_horas_urgente",)
    ),
    SettingSpec("sla_hours_high", "8", "business hours to resolve a high ticket", ("sla_horas_alta",)),
    SettingSpec("sla_hours_normal", "24", "business hours to resolve a normal ticket", ("sla_horas_normal",)),
    SettingSpec("sla_hours_low", "72", "business hours to resolve a low ticket", ("sla_horas_baixa",)),
    SettingSpec(
        "log_max_rows",
        "50000",
        "most rows kept in each log sheet (Activity, Emails, Tasks, Runs, Enrollments); older finished rows "
        "move to the archive in .sheetflow/",
        ("maximo_de_linhas_nos_logs", "max_linhas_log"),
    ),
    SettingSpec(
        "schedule",
        "",
        "when `sheetflow schedule`/`run-due` run the workbook: every 15m, Mon-Fri 08:00, Seg-Sex 08:00, 14:00",
        ("agenda", "agendamento", "programacao"),
    ),
)
SETTINGS_BY_KEY = {s.key: s for s in SETTINGS}
SETTING_ALIASES = {normalize(a): s.key for s in SETTINGS for a in s.pt}

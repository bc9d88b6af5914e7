"""Pure: what one parsed SQL statement locks and what data it destroys, read from PostgreSQL's parse tree.

The tree comes from pglast (libpg_query, PostgreSQL's own grammar); `sqltext.py` parses, this module reads.
Lock levels follow PostgreSQL's documentation ("Explicit Locking", and the notes of each command, e.g.
ALTER TABLE takes the strongest level any of its subcommands needs). What the text alone cannot tell
(a DROP TABLE also locks the tables its foreign keys point to) is asked of a `Catalog`; without one those
locks are simply not listed. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Protocol

from pglast import ast, enums
from pglast.parser import ParseError

from workers.engine import sqltokens

Name = tuple[str, ...]  # a relation as written, identifiers folded as PostgreSQL folds them: ("app", "Users")


class LockMode(IntEnum):
    """PostgreSQL's table lock modes, weakest to strongest (the numbers of its lockdefs.h)."""

    ACCESS_SHARE = 1
    ROW_SHARE = 2
    ROW_EXCLUSIVE = 3
    SHARE_UPDATE_EXCLUSIVE = 4
    SHARE = 5
    SHARE_ROW_EXCLUSIVE = 6
    EXCLUSIVE = 7
    ACCESS_EXCLUSIVE = 8

    @property
    def sql(self) -> str:
        """As written in SQL and in the docs: ACCESS EXCLUSIVE."""
        return self.name.replace("_", " ")

    @property
    def pg_locks_mode(self) -> str:
        """As pg_locks.mode shows it: AccessExclusiveLock."""
        return "".join(w.capitalize() for w in self.name.split("_")) + "Lock"

    def conflicts_with(self, other: LockMode) -> bool:
        return other in _CONFLICTS[self]

    @property
    def blocks_reads(self) -> bool:
        """Blocks a plain SELECT (ACCESS SHARE)."""
        return self.conflicts_with(LockMode.ACCESS_SHARE)

    @property
    def blocks_writes(self) -> bool:
        """Blocks INSERT / UPDATE / DELETE (ROW EXCLUSIVE)."""
        return self.conflicts_with(LockMode.ROW_EXCLUSIVE)


_M = LockMode
_CONFLICTS: dict[LockMode, frozenset[LockMode]] = {  # the "Conflicting Lock Modes" table of the docs
    _M.ACCESS_SHARE: frozenset({_M.ACCESS_EXCLUSIVE}),
    _M.ROW_SHARE: frozenset({_M.EXCLUSIVE, _M.ACCESS_EXCLUSIVE}),
    _M.ROW_EXCLUSIVE: frozenset({_M.SHARE, _M.SHARE_ROW_EXCLUSIVE, _M.EXCLUSIVE, _M.ACCESS_EXCLUSIVE}),
    _M.SHARE_UPDATE_EXCLUSIVE: frozenset({_M.SHARE_UPDATE_EXCLUSIVE, _M.SHARE, _M.SHARE_ROW_EXCLUSIVE,
                                          _M.EXCLUSIVE, _M.ACCESS_EXCLUSIVE}),
    _M.SHARE: frozenset({_M.ROW_EXCLUSIVE, _M.SHARE_UPDATE_EXCLUSIVE, _M.SHARE_ROW_EXCLUSIVE, _M.EXCLUSIVE,
                         _M.ACCESS_EXCLUSIVE}),
    _M.SHARE_ROW_EXCLUSIVE: frozenset({_M.ROW_EXCLUSIVE, _M.SHARE_UPDATE_EXCLUSIVE, _M.SHARE,
                                       _M.SHARE_ROW_EXCLUSIVE, _M.EXCLUSIVE, _M.ACCESS_EXCLUSIVE}),
    _M.EXCLUSIVE: frozenset({_M.ROW_SHARE, _M.ROW_EXCLUSIVE, _M.SHARE_UPDATE_EXCLUSIVE, _M.SHARE,
                             _M.SHARE_ROW_EXCLUSIVE, _M.EXCLUSIVE, _M.ACCESS_EXCLUSIVE}),
    _M.ACCESS_EXCLUSIVE: frozenset(LockMode),
}


@dataclass(frozen=True)
class LockTarget:
    relation: Name
    mode: LockMode
    via: str | None = None  # why a relation the statement does not name is locked (found through the catalog)


class DestroyKind(StrEnum):
    DROP_TABLE = "drop_table"
    DROP_COLUMN = "drop_column"
    DROP_SCHEMA = "drop_schema"
    DROP_INDEX = "drop_index"
    DROP_CONSTRAINT = "drop_constraint"
    TRUNCATE = "truncate"
    DELETE = "delete"
    UPDATE = "update"
    ALTER_COLUMN_TYPE = "alter_column_type"
    UPSERT = "upsert"  # INSERT ... ON CONFLICT DO UPDATE overwrites the conflicting rows' columns
    MERGE = "merge"  # MERGE ... WHEN MATCHED THEN UPDATE / DELETE


@dataclass(frozen=True)
class Destruction:
    """One thing a statement destroys or overwrites, as far as the statement's text says."""

    kind: DestroyKind
    relation: Name  # the table; for DROP INDEX the index, for DROP SCHEMA (schema,)
    columns: tuple[str, ...] = ()  # DROP COLUMN / ALTER COLUMN TYPE: that column; UPDATE / UPSERT / MERGE: set
    where: str | None = None  # DELETE / UPDATE: the WHERE condition as written; None means every row
    using: str | None = None  # UPDATE ... FROM / DELETE ... USING: the joined list as written
    with_: str | None = None  # the statement's WITH clause as written (its WHERE may name these)
    constraint: str | None = None  # DROP CONSTRAINT: its name
    cascade: bool = False  # DROP ... CASCADE / TRUNCATE ... CASCADE: dependent objects go too
    via: str | None = None  # destroyed because of another table (TRUNCATE ... CASCADE), found through the catalog
    current_of: bool = False  # WHERE CURRENT OF a cursor: the rows cannot be told from the text


@dataclass(frozen=True)
class Classification:
    kind: str  # the command, as PostgreSQL's command tags name it: DROP TABLE, ALTER TABLE, UPDATE, ...
    locks: tuple[LockTarget, ...] = ()
    destroys: tuple[Destruction, ...] = ()
    transactional: bool = True  # False: PostgreSQL refuses it inside a transaction block (… CONCURRENTLY, VACUUM)
    unsupported: str | None = None  # copy_from_stdin | copy_to_stdout: streams through a client


class Catalog(Protocol):
    """What only the database knows. Names are returned as the implementation resolves them."""

    def referenced_tables(self, table: Name) -> Sequence[Name]:
        """Tables that `table`'s foreign keys point to."""
        ...

    def referencing_tables(self, table: Name) -> Sequence[Name]:
        """Tables whose foreign keys point to `table`."""
        ...

    def foreign_key_target(self, table: Name, constraint: str) -> Name | None:
        """The table that foreign key `constraint` of `table` points to; None if it is no foreign key."""
        ...

    def index_table(self, index: Name) -> Name | None:
        ...

    def schema_tables(self, schema: str) -> Sequence[Name]:
        ...


class NoCatalog:
    """Knows nothing: only what the statement's text says is reported."""

    def referenced_tables(self, table: Name) -> Sequence[Name]:
        return ()

    def referencing_tables(self, table: Name) -> Sequence[Name]:
        return ()

    def foreign_key_target(self, table: Name, constraint: str) -> Name | None:
        return None

    def index_table(self, index: Name) -> Name | None:
        return None

    def schema_tables(self, schema: str) -> Sequence[Name]:
        return ()


NO_CATALOG = NoCatalog()


def qualified(name: Name) -> str:
    return ".".join(name)


# --- the tree -----------------------------------------------------------------------------------


def walk(node: object) -> Iterator[ast.Node]:
    """Every node under `node` (itself included), depth first, in source order."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Node):
            yield item
            children = [getattr(item, slot, None) for slot in _slots(type(item))]
            stack.extend(c for c in reversed(children) if isinstance(c, ast.Node | tuple | list))
        elif isinstance(item, tuple | list):
            stack.extend(c for c in reversed(item) if isinstance(c, ast.Node | tuple | list))


_SLOTS: dict[type, tuple[str, ...]] = {}


def _slots(node_type: type) -> tuple[str, ...]:
    if node_type not in _SLOTS:
        _SLOTS[node_type] = tuple(getattr(node_type, "__slots__", ()))
    return _SLOTS[node_type]


def range_name(rv: ast.RangeVar | None) -> Name:
    if rv is None:
        return ()
    return tuple(p for p in (rv.catalogname, rv.schemaname, rv.relname) if p)


def _string_list(items: Sequence[object] | None) -> Name:
    return tuple(str(getattr(i, "sval", "")) for i in items or ())


@dataclass
class _Builder:
    """Collects locks (deduplicated, in order of appearance) and destructions for one statement."""

    locks: list[LockTarget] = field(default_factory=list)
    destroys: list[Destruction] = field(default_factory=list)

    def lock(self, relation: Name, mode: LockMode, via: str | None = None) -> None:
        if relation and all((t.relation, t.mode) != (relation, mode) for t in self.locks):
            self.locks.append(LockTarget(relation, mode, via))

    def destroy(self, destruction: Destruction) -> None:
        if destruction not in self.destroys:
            self.destroys.append(destruction)


# --- source text of clauses ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Tok:
    start: int
    end: int  # exclusive
    name: str
    depth: int  # parentheses around it


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    depth = 0
    try:
        scanned = sqltokens.tokens(text)
    except ParseError:
        return out
    for t in scanned:
        if t.name in sqltokens.COMMENTS:
            continue
        if t.name == "ASCII_41":
            depth -= 1
        out.append(_Tok(t.start, t.end, t.name, depth))
        if t.name == "ASCII_40":
            depth += 1
    return out


def _clause(text: str, toks: list[_Tok], after: int, keyword: str, stops: tuple[str, ...]) -> str | None:
    """Source text of the clause starting with `keyword` past offset `after`, up to a stop word.

    Only tokens at the nesting depth of the statement at `after` count (a subquery's WHERE is not the
    statement's); the clause also ends where that statement's parentheses close (a WITH query).
    """
    rest = [t for t in toks if t.start >= after]
    if not rest:
        return None
    depth = rest[0].depth
    start = None
    for i, t in enumerate(rest):
        if t.depth < depth:
            break
        if t.depth > depth:
            continue
        after_distinct = i > 0 and rest[i - 1].name == "DISTINCT"  # IS DISTINCT FROM is no FROM clause
        if start is None:
            if t.name == keyword and not (keyword == "FROM" and after_distinct):
                start = i + 1
        elif t.name in stops and not (t.name == "FROM" and after_distinct):
            break
    else:
        i = len(rest)
    if start is None or i <= start:
        return None
    return text[rest[start].start:rest[i - 1].end]


def _with_text(text: str, toks: list[_Tok], offset: int, with_clause: ast.WithClause | None,
               main: str) -> str | None:
    """The WITH clause as written: from WITH up to the top-level main keyword (UPDATE / DELETE)."""
    if with_clause is None:
        return None
    start = (with_clause.location or 0) - offset
    rest = [t for t in toks if t.start >= start]
    for t in rest:
        if t.depth == rest[0].depth and t.name == main:
            return text[start:t.start].rstrip()
    return None


# --- statements ---------------------------------------------------------------------------------

_SUE_REL_OPTIONS = {"fillfactor", "toast_tuple_target", "parallel_workers", "vacuum_truncate",
                    "vacuum_index_cleanup", "log_autovacuum_min_duration"}  # AlterTableGetRelOptionsLockLevel
_AT = enums.AlterTableType
_SUE_SUBCOMMANDS = {_AT.AT_SetStatistics, _AT.AT_ClusterOn, _AT.AT_DropCluster, _AT.AT_SetOptions,
                    _AT.AT_ResetOptions, _AT.AT_ValidateConstraint, _AT.AT_DetachPartitionFinalize}
_SRE_SUBCOMMANDS = {_AT.AT_EnableTrig, _AT.AT_EnableAlwaysTrig, _AT.AT_EnableReplicaTrig, _AT.AT_EnableTrigAll,
                    _AT.AT_EnableTrigUser, _AT.AT_DisableTrig, _AT.AT_DisableTrigAll, _AT.AT_DisableTrigUser}
_OT = enums.ObjectType
_DROP_NAMES: dict[object, str] = {_OT.OBJECT_TABLE: "TABLE", _OT.OBJECT_INDEX: "INDEX", _OT.OBJECT_SCHEMA: "SCHEMA",
               _OT.OBJECT_VIEW: "VIEW", _OT.OBJECT_MATVIEW: "MATERIALIZED VIEW", _OT.OBJECT_SEQUENCE: "SEQUENCE",
               _OT.OBJECT_FOREIGN_TABLE: "FOREIGN TABLE", _OT.OBJECT_TRIGGER: "TRIGGER",
               _OT.OBJECT_FUNCTION: "FUNCTION", _OT.OBJECT_TYPE: "TYPE", _OT.OBJECT_POLICY: "POLICY",
               _OT.OBJECT_RULE: "RULE", _OT.OBJECT_EXTENSION: "EXTENSION", _OT.OBJECT_PROCEDURE: "PROCEDURE",
               _OT.OBJECT_DOMAIN: "DOMAIN"}
_RELATION_DROPS = {_OT.OBJECT_TABLE, _OT.OBJECT_VIEW, _OT.OBJECT_MATVIEW, _OT.OBJECT_SEQUENCE,
                   _OT.OBJECT_FOREIGN_TABLE}
_ON_TABLE_DROPS = {_OT.OBJECT_TRIGGER, _OT.OBJECT_POLICY, _OT.OBJECT_RULE}  # DROP TRIGGER t ON table
_SIMPLE_KINDS = {
    ast.SelectStmt: "SELECT", ast.InsertStmt: "INSERT", ast.UpdateStmt: "UPDATE", ast.DeleteStmt: "DELETE",
    ast.MergeStmt: "MERGE", ast.TruncateStmt: "TRUNCATE", ast.IndexStmt: "CREATE INDEX",
    ast.CreateStmt: "CREATE TABLE", ast.CreateTrigStmt: "CREATE TRIGGER", ast.ViewStmt: "CREATE VIEW",
    ast.LockStmt: "LOCK TABLE", ast.ClusterStmt: "CLUSTER", ast.CopyStmt: "COPY",
    ast.RefreshMatViewStmt: "REFRESH MATERIALIZED VIEW", ast.CreateFunctionStmt: "CREATE FUNCTION",
    ast.CreateSchemaStmt: "CREATE SCHEMA", ast.CreateSeqStmt: "CREATE SEQUENCE", ast.ReindexStmt: "REINDEX",
}


def classify(node: ast.Node, text: str, offset: int = 0, catalog: Catalog = NO_CATALOG) -> Classification:
    """Classify the statement `node`, whose source is `text`, found at character `offset` of the parsed script."""
    b = _Builder()
    kind = _SIMPLE_KINDS.get(type(node)) or _leading_keywords(text)
    transactional = True
    unsupported = None
    if isinstance(node, ast.DropStmt):
        kind = "DROP " + _DROP_NAMES.get(node.removeType, kind.removeprefix("DROP "))
        transactional = _drop(node, b, catalog)
    elif isinstance(node, ast.AlterTableStmt):
        kind = "ALTER " + ("INDEX" if node.objtype == _OT.OBJECT_INDEX else "TABLE")
        transactional = _alter_table(node, b, catalog)
    elif isinstance(node, ast.TruncateStmt):
        _truncate(node, b, catalog)
    elif isinstance(node, ast.IndexStmt):
        b.lock(range_name(node.relation), _M.SHARE_UPDATE_EXCLUSIVE if node.concurrent else _M.SHARE)
        transactional = not node.concurrent
    elif isinstance(node, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt | ast.SelectStmt):
        _dml(node, text, offset, b)
    elif isinstance(node, ast.CopyStmt):
        if node.relation is not None:
            b.lock(range_name(node.relation), _M.ROW_EXCLUSIVE if node.is_from else _M.ACCESS_SHARE)
        if node.query is not None:
            _dml(node.query, text, offset, b)
        if node.filename is None and not node.is_program:
            unsupported = "copy_from_stdin" if node.is_from else "copy_to_stdout"
    elif isinstance(node, ast.CreateTrigStmt):
        b.lock(range_name(node.relation), _M.SHARE_ROW_EXCLUSIVE)
    elif isinstance(node, ast.CreateStmt):
        _create_table(node, b)
    elif isinstance(node, ast.ViewStmt | ast.CreateTableAsStmt):
        _reads(node.query, b)
    elif isinstance(node, ast.RenameStmt) and node.relation is not None:
        index = node.renameType == _OT.OBJECT_INDEX
        b.lock(range_name(node.relation), _M.SHARE_UPDATE_EXCLUSIVE if index else _M.ACCESS_EXCLUSIVE)
        kind = "ALTER INDEX" if index else "ALTER TABLE"
    elif isinstance(node, ast.AlterObjectSchemaStmt) and node.relation is not None:
        b.lock(range_name(node.relation), _M.ACCESS_EXCLUSIVE)
    elif isinstance(node, ast.LockStmt):
        for rv in node.relations or ():
            b.lock(range_name(rv), LockMode(node.mode or LockMode.ACCESS_EXCLUSIVE))
    elif isinstance(node, ast.VacuumStmt):
        transactional = _vacuum(node, b)
        kind = "VACUUM" if node.is_vacuumcmd else "ANALYZE"
    elif isinstance(node, ast.ClusterStmt) and node.relation is not None:
        b.lock(range_name(node.relation), _M.ACCESS_EXCLUSIVE)
    elif isinstance(node, ast.ReindexStmt):
        concurrent = any(getattr(p, "defname", "") == "concurrently" for p in node.params or ())
        if node.relation is not None:
            b.lock(range_name(node.relation), _M.SHARE_UPDATE_EXCLUSIVE if concurrent else _M.ACCESS_EXCLUSIVE
                   if node.kind == enums.ReindexObjectType.REINDEX_OBJECT_INDEX else _M.SHARE)
        transactional = not concurrent and node.kind in (enums.ReindexObjectType.REINDEX_OBJECT_INDEX,
                                                         enums.ReindexObjectType.REINDEX_OBJECT_TABLE)
    elif isinstance(node, ast.RefreshMatViewStmt):
        b.lock(range_name(node.relation), _M.EXCLUSIVE if node.concurrent else _M.ACCESS_EXCLUSIVE)
    elif isinstance(node, ast.CreatedbStmt | ast.DropdbStmt | ast.AlterSystemStmt | ast.CreateTableSpaceStmt
                    | ast.DropTableSpaceStmt):
        transactional = False
    return Classification(kind, tuple(b.locks), tuple(b.destroys), transactional, unsupported)


def _leading_keywords(text: str) -> str:
    """The first one or two keywords, upper-case: the command, for statements not classified further."""
    words: list[str] = []
    try:
        scanned = sqltokens.tokens(text)
    except ParseError:
        scanned = []
    for t in scanned:
        if t.name in sqltokens.COMMENTS:
            continue
        if t.kind == "NO_KEYWORD" or len(words) == 2:
            break
        words.append(text[t.start:t.end].upper())
    return " ".join(words)


def _drop(node: ast.DropStmt, b: _Builder, catalog: Catalog) -> bool:
    cascade = node.behavior == enums.DropBehavior.DROP_CASCADE
    names = [(str(o.sval),) if isinstance(o, ast.String) else _string_list(o) for o in node.objects or ()]
    for name in names:
        if node.removeType in _RELATION_DROPS:
            b.lock(name, _M.ACCESS_EXCLUSIVE)
            if node.removeType == _OT.OBJECT_TABLE:
                b.destroy(Destruction(DestroyKind.DROP_TABLE, name, cascade=cascade))
                # Dropping its foreign keys drops their triggers on the other table: ACCESS EXCLUSIVE there too.
                for other in catalog.referenced_tables(name):
                    b.lock(other, _M.ACCESS_EXCLUSIVE, via=f"foreign key of {qualified(name)}")
                for other in catalog.referencing_tables(name) if cascade else ():
                    b.lock(other, _M.ACCESS_EXCLUSIVE, via=f"foreign key to {qualified(name)}")
        elif node.removeType == _OT.OBJECT_INDEX:
            mode = _M.SHARE_UPDATE_EXCLUSIVE if node.concurrent else _M.ACCESS_EXCLUSIVE
            b.lock(name, mode)
            table = catalog.index_table(name)
            if table:
                b.lock(table, mode, via=f"index {qualified(name)}")
            b.destroy(Destruction(DestroyKind.DROP_INDEX, name, cascade=cascade))
        elif node.removeType == _OT.OBJECT_SCHEMA:
            b.destroy(Destruction(DestroyKind.DROP_SCHEMA, name, cascade=cascade))
            for table in catalog.schema_tables(name[0]) if cascade else ():
                b.lock(table, _M.ACCESS_EXCLUSIVE, via=f"schema {name[0]}")
        elif node.removeType in _ON_TABLE_DROPS and len(name) > 1:
            b.lock(name[:-1], _M.ACCESS_EXCLUSIVE)
    return not node.concurrent


def _alter_table(node: ast.AlterTableStmt, b: _Builder, catalog: Catalog) -> bool:
    table = range_name(node.relation)
    mode = _M.ACCESS_SHARE
    others: list[tuple[Name, LockMode, str | None]] = []
    transactional = True
    for cmd in node.cmds or ():
        sub = cmd.subtype
        cmd_mode = _M.ACCESS_EXCLUSIVE
        if sub in _SUE_SUBCOMMANDS:
            cmd_mode = _M.SHARE_UPDATE_EXCLUSIVE
        elif sub in _SRE_SUBCOMMANDS:
            cmd_mode = _M.SHARE_ROW_EXCLUSIVE
        elif sub in (_AT.AT_SetRelOptions, _AT.AT_ResetRelOptions):
            options = {str(getattr(d, "defname", "")) for d in cmd.def_ or ()}
            if all(o in _SUE_REL_OPTIONS or o.startswith(("autovacuum_", "toast.autovacuum_")) for o in options):
                cmd_mode = _M.SHARE_UPDATE_EXCLUSIVE
        elif sub == _AT.AT_AddConstraint and _is_foreign_key(cmd.def_):
            cmd_mode = _M.SHARE_ROW_EXCLUSIVE
        elif sub in (_AT.AT_AttachPartition, _AT.AT_DetachPartition):
            concurrent = bool(getattr(cmd.def_, "concurrent", False))
            cmd_mode = _M.SHARE_UPDATE_EXCLUSIVE if sub == _AT.AT_AttachPartition or concurrent \
                else _M.ACCESS_EXCLUSIVE
            partition = getattr(cmd.def_, "name", None)
            if isinstance(partition, ast.RangeVar):
                others.append((range_name(partition),
                               _M.SHARE_UPDATE_EXCLUSIVE if concurrent else _M.ACCESS_EXCLUSIVE, None))
            transactional = transactional and not concurrent
        mode = max(mode, cmd_mode)
        # Foreign keys added here lock the table they point to in SHARE ROW EXCLUSIVE.
        for constraint in walk(cmd.def_):
            if _is_foreign_key(constraint):
                assert isinstance(constraint, ast.Constraint)
                others.append((range_name(constraint.pktable), _M.SHARE_ROW_EXCLUSIVE, None))
        if sub == _AT.AT_DropColumn and cmd.name:
            b.destroy(Destruction(DestroyKind.DROP_COLUMN, table, (cmd.name,),
                                  cascade=cmd.behavior == enums.DropBehavior.DROP_CASCADE))
        elif sub == _AT.AT_AlterColumnType and cmd.name:
            b.destroy(Destruction(DestroyKind.ALTER_COLUMN_TYPE, table, (cmd.name,)))
        elif sub == _AT.AT_DropConstraint and cmd.name:
            b.destroy(Destruction(DestroyKind.DROP_CONSTRAINT, table, constraint=cmd.name,
                                  cascade=cmd.behavior == enums.DropBehavior.DROP_CASCADE))
            target = catalog.foreign_key_target(table, cmd.name)
            if target and target != table:
                others.append((target, _M.ACCESS_EXCLUSIVE, f"foreign key {cmd.name} of {qualified(table)}"))
    b.lock(table, mode)
    for name, other_mode, via in others:
        b.lock(name, other_mode, via)
    return transactional


def _is_foreign_key(node: object) -> bool:
    return isinstance(node, ast.Constraint) and node.contype == enums.ConstrType.CONSTR_FOREIGN


def _truncate(node: ast.TruncateStmt, b: _Builder, catalog: Catalog) -> None:
    cascade = node.behavior == enums.DropBehavior.DROP_CASCADE
    pending: list[tuple[Name, str | None]] = [(range_name(rv), None) for rv in node.relations or ()]
    seen: set[Name] = set()
    while pending:
        name, via = pending.pop(0)
        if name in seen:
            continue
        seen.add(name)
        b.lock(name, _M.ACCESS_EXCLUSIVE, via)
        b.destroy(Destruction(DestroyKind.TRUNCATE, name, cascade=cascade, via=via))
        if cascade:  # CASCADE empties the tables that reference it, and theirs, too
            pending += [(other, f"foreign key to {qualified(name)}") for other in catalog.referencing_tables(name)]


def _create_table(node: ast.CreateStmt, b: _Builder) -> None:
    for parent in node.inhRelations or ():
        if isinstance(parent, ast.RangeVar):
            mode = _M.ACCESS_EXCLUSIVE if node.partbound is not None else _M.SHARE_UPDATE_EXCLUSIVE
            b.lock(range_name(parent), mode)
    for n in walk(node.tableElts):
        if _is_foreign_key(n):
            assert isinstance(n, ast.Constraint)
            b.lock(range_name(n.pktable), _M.SHARE_ROW_EXCLUSIVE)
        elif isinstance(n, ast.TableLikeClause):
            b.lock(range_name(n.relation), _M.ACCESS_SHARE)


def _vacuum(node: ast.VacuumStmt, b: _Builder) -> bool:
    full = any(getattr(o, "defname", "") == "full" for o in node.options or ())
    mode = _M.ACCESS_EXCLUSIVE if full else _M.SHARE_UPDATE_EXCLUSIVE
    for rel in node.rels or ():
        if isinstance(rel, ast.VacuumRelation) and rel.relation is not None:
            b.lock(range_name(rel.relation), mode)
    return not node.is_vacuumcmd  # ANALYZE runs in a transaction, VACUUM does not


def _reads(node: object, b: _Builder) -> None:
    ctes = {str(n.ctename) for n in walk(node) if isinstance(n, ast.CommonTableExpr)}
    for n in walk(node):
        if isinstance(n, ast.RangeVar) and not (n.schemaname is None and n.relname in ctes):
            b.lock(range_name(n), _M.ACCESS_SHARE)


def _dml(node: ast.Node, text: str, offset: int, b: _Builder) -> None:
    """SELECT / INSERT / UPDATE / DELETE / MERGE, including data-modifying WITH queries inside them."""
    nodes = list(walk(node))
    written: set[int] = set()  # ids of the target RangeVars of INSERT / UPDATE / DELETE / MERGE
    row_locked: set[int] = set()
    for n in nodes:
        if isinstance(n, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt):
            written.add(id(n.relation))
        elif isinstance(n, ast.SelectStmt) and n.lockingClause:
            row_locked |= _row_locked(n)
    ctes = {str(n.ctename) for n in nodes if isinstance(n, ast.CommonTableExpr)}
    in_locking = {id(rv) for n in nodes if isinstance(n, ast.LockingClause) for rv in walk(n)}  # FOR UPDATE OF x
    for n in nodes:
        if not isinstance(n, ast.RangeVar) or id(n) in in_locking \
                or (n.schemaname is None and n.relname in ctes and id(n) not in written):
            continue
        mode = _M.ROW_EXCLUSIVE if id(n) in written else _M.ROW_SHARE if id(n) in row_locked else _M.ACCESS_SHARE
        b.lock(range_name(n), mode)
    toks: list[_Tok] | None = None
    for n in nodes:
        if isinstance(n, ast.UpdateStmt | ast.DeleteStmt):
            toks = _tokens(text) if toks is None else toks
            b.destroy(_row_change(n, text, toks, offset))
        elif isinstance(n, ast.InsertStmt) and n.onConflictClause is not None \
                and n.onConflictClause.action == enums.OnConflictAction.ONCONFLICT_UPDATE:
            columns = tuple(dict.fromkeys(str(t.name) for t in n.onConflictClause.targetList or ()))
            b.destroy(Destruction(DestroyKind.UPSERT, range_name(n.relation), columns))
        elif isinstance(n, ast.MergeStmt):
            clauses = [c for c in n.mergeWhenClauses or () if isinstance(c, ast.MergeWhenClause)]
            if any(c.commandType in (enums.CmdType.CMD_UPDATE, enums.CmdType.CMD_DELETE) for c in clauses):
                columns = tuple(dict.fromkeys(str(t.name) for c in clauses for t in c.targetList or ()))
                b.destroy(Destruction(DestroyKind.MERGE, range_name(n.relation), columns))


def _row_locked(select: ast.SelectStmt) -> set[int]:
    """The FROM relations that SELECT ... FOR UPDATE / SHARE locks (ROW SHARE instead of ACCESS SHARE)."""
    from_rels = [n for n in walk(select.fromClause) if isinstance(n, ast.RangeVar)]
    named: set[str] = set()
    every = False
    for clause in select.lockingClause or ():
        rels = getattr(clause, "lockedRels", None)
        if not rels:
            every = True
        named |= {str(r.relname) for r in rels or ()}
    return {id(rv) for rv in from_rels
            if every or rv.relname in named or (rv.alias is not None and rv.alias.aliasname in named)}


def _row_change(n: ast.UpdateStmt | ast.DeleteStmt, text: str, toks: list[_Tok], offset: int) -> Destruction:
    after = ((n.relation.location if n.relation else 0) or 0) - offset
    update = isinstance(n, ast.UpdateStmt)
    current_of = isinstance(n.whereClause, ast.CurrentOfExpr)
    where = None
    if n.whereClause is not None:
        where = _clause(text, toks, after, "WHERE", ("RETURNING",))
    joins = n.fromClause if isinstance(n, ast.UpdateStmt) else n.usingClause
    using = _clause(text, toks, after, "FROM" if update else "USING", ("WHERE", "RETURNING")) if joins else None
    with_ = _with_text(text, toks, offset, n.withClause, "UPDATE" if update else "DELETE_P")
    columns: tuple[str, ...] = ()
    if isinstance(n, ast.UpdateStmt):
        columns = tuple(dict.fromkeys(str(t.name) for t in n.targetList or ()))
    kind = DestroyKind.UPDATE if update else DestroyKind.DELETE
    return Destruction(kind, range_name(n.relation), columns, where=where, using=using, with_=with_,
                       current_of=current_of)

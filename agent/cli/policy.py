"""`evolve policy list|show|rollback`."""

from __future__ import annotations

import typer

from agent.cli.common import out, store
from agent.config import ConfigError

app = typer.Typer(no_args_is_help=True, help="List, show and roll back policies.")


def policy_id(st, name: str) -> str:
    """The id meant by NAME: a policy id, 'incumbent' or 'initial'."""
    from agent.policy import ensure_initial

    if name == "incumbent":
        return ensure_initial(st).id
    if name == "initial":
        ensure_initial(st)
        return min(st.policies(), key=lambda p: p.version).id
    if st.get_policy(name) is None:
        raise ConfigError(f"no policy {name!r}; `evolve policy list` shows the known ones")
    return name


@app.command("list")
def policy_list() -> None:
    """All policies, newest first, with the incumbent marked."""
    from agent.policy import INCUMBENT

    st = store()
    current = st.get_pointer(INCUMBENT)
    for p in sorted(st.policies(), key=lambda p: p.version, reverse=True):
        mark = "*" if p.id == current else " "
        spec = p.spec
        out.print(f"{mark} {p.id}  v{p.version}  parent={p.parent_id or '-'}  exemplars_k={spec.get('exemplars_k')} "
                  f"insights={len(spec.get('insights', []))}  {p.note}", markup=False, highlight=False)


@app.command("show")
def policy_show(policy: str = typer.Argument("incumbent", help="Policy id, 'incumbent' or 'initial'.")) -> None:
    """Show one policy's full contents."""
    st = store()
    p = st.get_policy(policy_id(st, policy))
    out.print_json(data={"id": p.id, "version": p.version, "parent": p.parent_id, "digest": p.digest,
                         "spec": p.spec})


@app.command("rollback")
def policy_rollback(to: str = typer.Option(None, help="Policy id to restore (default: the one the last "
                                                      "promotion replaced).")) -> None:
    """Move the incumbent back to an earlier policy."""
    from agent.policy import rollback

    row = rollback(store(), to)
    out.print(f"incumbent {row.incumbent_before} -> {row.incumbent_after} (rolled back)", markup=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="policy")

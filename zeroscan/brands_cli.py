"""`zeroscan brands|accounts|api ...`: the operator's side of the brand registry. `register` adds
the subcommands to the main parser; each handler takes `(args, settings)` and returns an exit code.

`brands put` and `brands delete` act as the operator (any brand) unless `--account NAME` is given
(an owner's submission then waits for approval), and publish every accepted change to the
`brands` topic unless `--no-publish`. `brands pending|approve|reject|grant|history` are the
operator's review of owners' submissions; they act as the local operator, or as the operator
account whose token is in `$ZEROSCAN_TOKEN`. The registry takes several writers, so all of this
works while `zeroscan api serve` runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, Iterator

import orjson

from brand_signals.contract import MAX_BRAND_RECORD_BYTES, ContractError, brand_from_obj, brand_to_obj, loads
from brand_signals.registry import (
    Actor,
    BrandEntry,
    BrandRegistry,
    Privilege,
    PublishFailedError,
    RegistryLockedError,
    check_account_name,
)
from zeroscan.settings import Settings

BRAND_FILE_SUFFIXES = (".json", ".jsonl")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `brands`, `accounts` and `api` to the `zeroscan` command's subparsers."""
    b = subparsers.add_parser("brands", help="the brand registry: put, list, get, delete, export")
    bs = b.add_subparsers(dest="brands_command", required=True)

    p = bs.add_parser("put", help="register or update brands from JSON / JSON Lines files or folders")
    p.add_argument("paths", nargs="+", type=Path, help="a .json (object or array) or .jsonl file, or a folder of them")
    p.add_argument("--account", help="act as this owner account instead of the operator")
    p.add_argument("--no-publish", action="store_true", help="change the registry only, not the brands topic")
    p.set_defaults(fn=cmd_brands_put)

    ls = bs.add_parser("list", help="registered brands, one a line")
    ls.add_argument("--all", action="store_true", help="include withdrawn brands")
    ls.add_argument("--owner", help="only this account's brands")
    ls.set_defaults(fn=cmd_brands_list)

    g = bs.add_parser("get", help="one brand's record, owner and update time as JSON")
    g.add_argument("brand_id")
    g.set_defaults(fn=cmd_brands_get)

    d = bs.add_parser("delete", help="withdraw a brand (tombstone with the next version)")
    d.add_argument("brand_id")
    d.add_argument("--version", type=int, help="the tombstone's version (default: the next one)")
    d.add_argument("--account", help="act as this owner account instead of the operator")
    d.add_argument("--no-publish", action="store_true")
    d.set_defaults(fn=cmd_brands_delete)

    e = bs.add_parser("export", help="every brand as contract JSON Lines on stdout")
    e.add_argument("--all", action="store_true", help="include tombstones of withdrawn brands")
    e.set_defaults(fn=cmd_brands_export)

    r = bs.add_parser("republish", help="send the registry's current records to the brands topic again")
    r.add_argument("brand_ids", nargs="*", help="default: every brand, tombstones included")
    r.set_defaults(fn=cmd_brands_republish)

    pe = bs.add_parser("pending", help="owners' submissions waiting for approval, with the reasons to look at")
    pe.set_defaults(fn=cmd_brands_pending)
    ap = bs.add_parser("approve", help="approve a pending submission: it is published to the brands topic")
    ap.add_argument("brand_id")
    ap.add_argument("--grant", action="append", default=[], choices=[p.value for p in Privilege],
                    help="grant a privilege with the approval (repeatable)")
    ap.set_defaults(fn=cmd_brands_approve)
    rj = bs.add_parser("reject", help="reject a pending submission, with the reason the owner is shown")
    rj.add_argument("brand_id")
    rj.add_argument("--reason", required=True)
    rj.set_defaults(fn=cmd_brands_reject)
    gr = bs.add_parser("grant", help="grant (or with --revoke, take back) a privilege")
    gr.add_argument("brand_id")
    gr.add_argument("privilege", choices=[p.value for p in Privilege])
    gr.add_argument("--revoke", action="store_true")
    gr.set_defaults(fn=cmd_brands_grant)
    hi = bs.add_parser("history", help="who did what to a brand, and when (the registry's audit trail)")
    hi.add_argument("brand_id")
    hi.set_defaults(fn=cmd_brands_history)

    a = subparsers.add_parser("accounts", help="accounts of the HTTP API: owners, reviewers, operators")
    acs = a.add_subparsers(dest="accounts_command", required=True)
    ac = acs.add_parser("create", help="create an account and print its API token (shown once)")
    ac.add_argument("name")
    ac.add_argument("--role", choices=["owner", "reviewer", "operator"], default="owner")
    ac.add_argument("--no-publish", action="store_true", help="change the account store only, not the ledger")
    ac.set_defaults(fn=cmd_accounts_create)
    al = acs.add_parser("list", help="account names, creation and token times, revoked or not")
    al.set_defaults(fn=cmd_accounts_list)
    ar = acs.add_parser("rotate", help="issue a new API token (printed once); the old one stops working")
    ar.add_argument("name")
    ar.add_argument("--no-publish", action="store_true")
    ar.set_defaults(fn=cmd_accounts_rotate)
    ad = acs.add_parser("revoke", help="stop every token of an account (its brands stay its own); rotate restores")
    ad.add_argument("name")
    ad.add_argument("--no-publish", action="store_true")
    ad.set_defaults(fn=cmd_accounts_revoke)

    api = subparsers.add_parser("api", help="the brand owners' HTTP API")
    aps = api.add_subparsers(dest="api_command", required=True)
    sv = aps.add_parser("serve", help="serve the API (the operator's commands keep working beside it)")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8080)
    sv.add_argument("--no-publish", action="store_true", help="do not publish changes to Kafka")
    sv.add_argument("--tls-cert", type=Path, help="serve HTTPS: PEM certificate chain (the server's first)")
    sv.add_argument("--tls-key", type=Path, help="serve HTTPS: the certificate's PEM private key")
    sv.set_defaults(fn=cmd_api_serve)


# -- reading brand files ---------------------------------------------------------------------

def brand_files(paths: list[Path]) -> list[Path]:
    """The files named, and every .json/.jsonl file directly in the folders named, in name order."""
    out = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in BRAND_FILE_SUFFIXES and f.is_file()))
        elif p.is_file():
            out.append(p)
        else:
            raise ValueError(f"{p}: no such file or folder")
    return out


def read_brand_objects(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, object) per record: `file:line` for JSON Lines, `file[i]` for a JSON array."""
    if path.suffix.lower() == ".jsonl":
        with open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield f"{path}:{n}", _loads(line, f"{path}:{n}")
        return
    raw = path.read_bytes()
    if raw.lstrip().startswith(b"["):
        try:
            items = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise ContractError(f"{path}: not valid UTF-8 JSON: {e}") from None
        for i, obj in enumerate(items):
            if not isinstance(obj, dict):
                raise ContractError(f"{path}[{i}]: expected a JSON object")
            yield f"{path}[{i}]", obj
    else:
        yield str(path), _loads(raw, str(path))


def _loads(raw: bytes, where: str) -> dict[str, Any]:
    try:
        return loads(raw, MAX_BRAND_RECORD_BYTES)
    except ContractError as e:
        raise ContractError(f"{where}: {e}") from None


# -- handlers --------------------------------------------------------------------------------

def _publisher(settings: Settings, no_publish: bool):
    """The Kafka publisher for the `brands` topic (close it when done), or None."""
    if no_publish:
        return None
    from connectors.brand_publisher import KafkaBrandPublisher

    return KafkaBrandPublisher.from_settings(settings)


def _actor(settings: Settings, account: str | None) -> Actor:
    if account is None:
        return Actor.admin()
    from zeroscan.accounts import AccountStore

    found = AccountStore.at_state_dir(settings.state_dir).get(account)
    if found is None:
        raise ValueError(f"account {account!r} does not exist (zeroscan accounts create {account})")
    if found.revoked:
        raise ValueError(f"account {account!r} is revoked (zeroscan accounts rotate {account} restores it)")
    if found.role.value != "owner":
        raise ValueError(f"account {account!r} has the {found.role.value} role, not the owner role")
    return Actor.account(account)


def cmd_brands_put(args, settings: Settings) -> int:
    from connectors.image_store import ImageRejected, ImageStore

    try:
        actor = _actor(settings, args.account)
        files = brand_files(args.paths)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    store = ImageStore.at_state_dir(settings.state_dir)
    publish = _publisher(settings, args.no_publish)
    ok = failed = 0
    last_error: Exception | None = None
    try:
        with BrandRegistry.at_state_dir(settings.state_dir, publish, image_budget=settings.image_budget) as reg:
            for path in files:
                if isinstance(last_error, PublishFailedError):
                    break
                try:
                    records = list(read_brand_objects(path))
                except (ContractError, OSError) as e:
                    print(f"error: {e}", file=sys.stderr)
                    failed += 1
                    continue
                for where, obj in records:
                    try:
                        brand = brand_from_obj(obj)
                        reg.check_put(brand, actor)
                        brand = dataclasses.replace(
                            brand,
                            logos=tuple(store.ingest(r, path.parent) for r in brand.logos),
                            product_images=tuple(store.ingest(r, path.parent) for r in brand.product_images))
                        pixels = sum(store.get(r.sha256).info.pixels for r in brand.logos + brand.product_images)
                        change = reg.put(brand, actor, image_pixels=pixels)
                    except PublishFailedError as e:  # the broker is unreachable: stop, change nothing more
                        print(f"error: {where}: {e}; stopping", file=sys.stderr)
                        failed, last_error = failed + 1, e
                        break
                    except (ValueError, ImageRejected) as e:  # contract, version, owner and image errors
                        print(f"error: {where}: {e}", file=sys.stderr)
                        failed += 1
                        continue
                    ok += 1
                    print(f"{brand.brand_id} v{brand.version} {change.kind.value} (owner {change.entry.owner})")
    except RegistryLockedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if publish is not None:
            publish.close()
    print(f"{ok} accepted, {failed} refused{'' if publish else ' (not published)'}", file=sys.stderr)
    return 1 if failed else 0


def _open_read_only(settings: Settings) -> BrandRegistry | None:
    try:
        return BrandRegistry.at_state_dir(settings.state_dir, read_only=True)
    except FileNotFoundError:
        return None


def cmd_brands_list(args, settings: Settings) -> int:
    reg = _open_read_only(settings)
    if reg is None:
        return 0
    with reg:
        for e in reg.entries(owner=args.owner, include_withdrawn=args.all):
            state = "withdrawn" if e.brand.deleted else e.brand.enforcement.value
            print(f"{e.brand.brand_id}\tv{e.brand.version}\t{state}\t{e.status.value}\t{e.owner}\t{e.brand.name}")
    return 0


def _entry_json(e: BrandEntry) -> bytes:
    from zeroscan.api import _entry_json as entry_obj

    return orjson.dumps(entry_obj(e), option=orjson.OPT_INDENT_2)


def cmd_brands_get(args, settings: Settings) -> int:
    reg = _open_read_only(settings)
    entry = None
    if reg is not None:
        with reg:
            entry = reg.get(args.brand_id)
    if entry is None:
        print(f"error: brand {args.brand_id} is not registered", file=sys.stderr)
        return 1
    sys.stdout.write(_entry_json(entry).decode() + "\n")
    return 0


def cmd_brands_delete(args, settings: Settings) -> int:
    try:
        actor = _actor(settings, args.account)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    publish = _publisher(settings, args.no_publish)
    try:
        with BrandRegistry.at_state_dir(settings.state_dir, publish) as reg:
            change = reg.withdraw(args.brand_id, actor, args.version)
    except (ValueError, RegistryLockedError, PublishFailedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if publish is not None:
            publish.close()
    print(f"{args.brand_id} v{change.entry.brand.version} withdrawn")
    return 0


def cmd_brands_export(args, settings: Settings) -> int:
    reg = _open_read_only(settings)
    if reg is None:
        return 0
    with reg:
        out = sys.stdout.buffer
        for e in reg.entries(include_withdrawn=args.all):
            out.write(orjson.dumps(brand_to_obj(e.brand)) + b"\n")
        out.flush()
    return 0


def cmd_brands_republish(args, settings: Settings) -> int:
    publish = _publisher(settings, False)
    try:
        with BrandRegistry.at_state_dir(settings.state_dir, publish) as reg:
            n = reg.republish(args.brand_ids or None)
    except (ValueError, RegistryLockedError, PublishFailedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        publish.close()
    print(f"republished {n} brand records to {settings.topics.brands}")
    return 0


def _operator(settings: Settings) -> Actor:
    """The local operator, or the operator account of $ZEROSCAN_TOKEN (named in the audit trail)."""
    token = settings.token
    if not token:
        return Actor.admin()
    from zeroscan.accounts import AccountStore, Role

    account = AccountStore.at_state_dir(settings.state_dir).authenticate(token)
    if account is None or account.role is not Role.OPERATOR:
        raise ValueError("ZEROSCAN_TOKEN is not an operator account's token (unset it to act as the local operator)")
    return Actor(account.name, is_admin=True)


def _review(settings: Settings, change) -> int:
    """Run one operator decision `change(registry, actor)` and print the entry."""
    publish = _publisher(settings, False)
    try:
        actor = _operator(settings)
        with BrandRegistry.at_state_dir(settings.state_dir, publish) as reg:
            result = change(reg, actor)
    except (ValueError, RegistryLockedError, PublishFailedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        publish.close()
    e = result.entry
    live = e.live is not None and not e.live.deleted
    print(f"{e.brand.brand_id} v{e.brand.version} {result.kind.value} by {actor.name}: status {e.status.value}, "
          f"grants {','.join(sorted(p.value for p in e.grants)) or 'none'}"
          + (f", published enforcement {e.live.enforcement.value}" if live else ""))
    return 0


def cmd_brands_pending(args, settings: Settings) -> int:
    reg = _open_read_only(settings)
    if reg is None:
        return 0
    with reg:
        for e in reg.pending():
            requested = ",".join(sorted(p.value for p in e.requests)) or "none"
            print(f"{e.brand.brand_id}\tv{e.brand.version}\t{e.owner}\t{e.brand.name}\tmarks: "
                  f"{'; '.join(e.brand.trademarks)}\trequests: {requested}")
            for c in e.concerns:
                print(f"  ! {c}")
    return 0


def cmd_brands_approve(args, settings: Settings) -> int:
    grants = [Privilege(g) for g in args.grant]
    return _review(settings, lambda reg, actor: reg.approve(args.brand_id, actor, grants))


def cmd_brands_reject(args, settings: Settings) -> int:
    return _review(settings, lambda reg, actor: reg.reject(args.brand_id, actor, args.reason))


def cmd_brands_grant(args, settings: Settings) -> int:
    return _review(settings, lambda reg, actor: reg.set_privilege(args.brand_id, Privilege(args.privilege), actor,
                                                                   granted=not args.revoke))


def cmd_brands_history(args, settings: Settings) -> int:
    from datetime import datetime, timezone

    reg = _open_read_only(settings)
    if reg is None:
        return 0
    with reg:
        for a in reg.audit(args.brand_id):
            at = datetime.fromtimestamp(a.at_ms / 1000, timezone.utc).isoformat(timespec="seconds")
            print(f"{at}\t{a.actor}\t{a.action}\t{orjson.dumps(a.detail).decode()}")
    return 0


def cmd_accounts_create(args, settings: Settings) -> int:
    return _issue_token(settings, args.name, rotate=False, role=args.role, no_publish=args.no_publish)


def cmd_accounts_rotate(args, settings: Settings) -> int:
    return _issue_token(settings, args.name, rotate=True, no_publish=args.no_publish)


def _existing(store, name: str):
    found = store.get(name)
    if found is None:
        raise ValueError(f"no account {name!r}")
    return found


def _record_account(settings: Settings, no_publish: bool, kind: str, account) -> None:
    """The account action onto the ledger (who: the operator at the machine), acknowledged."""
    from brand_signals.feedback.ledger import action_record
    from zeroscan.accounts import _now_ms

    publish = _publisher(settings, no_publish)
    if publish is None:
        return
    from connectors.brand_publisher import PublishError

    try:
        publish.record(action_record(kind, Actor.admin().name, _now_ms(), account=account.name,
                                     detail={"role": account.role.value}))
    except PublishError as e:
        raise ValueError(f"account {account.name}: not recorded on the ledger, nothing changed: {e}") from None
    finally:
        publish.close()


def _issue_token(settings: Settings, name: str, *, rotate: bool, role: str = "owner", no_publish: bool = False) -> int:
    """Create an account or rotate its token; the token goes to stdout, once, the rest to stderr.
    The action is recorded on the ledger first (unless `no_publish`): an action the ledger does
    not have is not done."""
    from zeroscan.accounts import AccountStore, Role

    store = AccountStore.at_state_dir(settings.state_dir)
    try:
        if rotate:
            _record_account(settings, no_publish, "account_rotated", _existing(store, name))
            account, token = store.rotate(name)
        else:
            from zeroscan.accounts import Account
            if store.get(check_account_name(name)) is not None:
                raise ValueError(f"account {name!r} already exists")
            _record_account(settings, no_publish, "account_created", Account(name, "", 0, 0, role=Role(role)))
            account, token = store.create(name, Role(role))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    what = "new API token (the old one no longer works)" if rotate else f"({account.role.value}) created; its API token"
    print(f"account {account.name} {what}, shown only this once:", file=sys.stderr)
    print(token)
    return 0


def cmd_accounts_list(args, settings: Settings) -> int:
    from datetime import datetime, timezone

    from zeroscan.accounts import AccountStore

    def iso(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="seconds")

    for a in AccountStore.at_state_dir(settings.state_dir).list():
        state = "revoked" if a.revoked else "active"
        print(f"{a.name}\t{a.role.value}\t{state}\tcreated {iso(a.created_at_ms)}\t"
              f"token {iso(a.token_at_ms or a.created_at_ms)}")
    return 0



def cmd_accounts_revoke(args, settings: Settings) -> int:
    from zeroscan.accounts import AccountStore

    store = AccountStore.at_state_dir(settings.state_dir)
    try:
        _record_account(settings, args.no_publish, "account_revoked", _existing(store, args.name))
        account = store.revoke(args.name)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"account {account.name} revoked: no token works until `zeroscan accounts rotate {account.name}`")
    return 0


def cmd_api_serve(args, settings: Settings) -> int:
    from connectors.image_store import ImageStore
    from zeroscan.accounts import AccountStore
    from zeroscan.api import create_app, serve

    for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if path is not None and not path.is_file():
            print(f"error: {flag} {path} is not a file", file=sys.stderr)
            return 2
    if (args.tls_cert is None) != (args.tls_key is None):
        print("error: HTTPS needs both --tls-cert and --tls-key", file=sys.stderr)
        return 2
    from zeroscan.portal.check import ListingCheck

    publish = _publisher(settings, args.no_publish)
    feedback = signals = standing = None
    if publish is not None:
        from connectors.feedback_io import FeedbackPublisher, SignalIndex, StandingIndex

        feedback = FeedbackPublisher(settings.kafka, settings.topics.feedback)
        signals = SignalIndex(settings.kafka, settings.topics.decisions, settings.topics.listings)
        standing = StandingIndex(settings.kafka, settings.topics.ledger)
    def image_config():
        from pipelines.scan_config import image_scan

        return image_scan(settings)

    # the portal's "check a listing": the job's image configuration (read at the first photo
    # check), photos only under this folder
    check = ListingCheck(settings.state_dir / "portal-checks", image_config if settings.images else None)
    try:
        with BrandRegistry.at_state_dir(settings.state_dir, publish, image_budget=settings.image_budget) as reg:
            app = create_app(reg, ImageStore.at_state_dir(settings.state_dir),
                             AccountStore.at_state_dir(settings.state_dir), feedback=feedback, signals=signals,
                             standing=standing, check=check)
            scheme = "https" if args.tls_cert else "http"
            print(f"brand API on {scheme}://{args.host}:{args.port} (OpenAPI at /docs, the owners' portal at /ui/); "
                  f"{'publishing to ' + settings.topics.brands if publish else 'not publishing'}", file=sys.stderr)
            serve(app, args.host, args.port, str(args.tls_cert) if args.tls_cert else None,
                  str(args.tls_key) if args.tls_key else None)
    except (ValueError, RegistryLockedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        for part in (publish, feedback, signals, standing, check):
            if part is not None:
                part.close()
    return 0

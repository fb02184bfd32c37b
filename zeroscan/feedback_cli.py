"""`zeroscan removals|appeals|signals`: the brand owner's self-service removals, the appeal
reviewer's answers, and a brand's open signals and standing. Every command acts with an API
token (`$ZEROSCAN_TOKEN`) of the right role: the brand's owner (removals, signals, standing),
a reviewer (appeals); the event on the `feedback` topic names that account as its actor."""
from __future__ import annotations

import argparse
import sys
import time

import orjson

from brand_signals.records import FeedbackEvent, FeedbackKind
from zeroscan.settings import Settings

TOKEN_ENV = "ZEROSCAN_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:
    r = subparsers.add_parser("removals", help="a brand owner's self-service removals")
    rs = r.add_subparsers(dest="action", required=True)
    c = rs.add_parser("create", help="remove a listing that presents your brand (owner's token: $ZEROSCAN_TOKEN)")
    c.add_argument("--brand", required=True)
    c.add_argument("--listing", required=True)
    c.add_argument("--reason", default="")
    c.set_defaults(fn=cmd_removals_create)
    st = rs.add_parser("status", help="the brand's removal accuracy, suspension and counts (owner's token)")
    st.add_argument("--brand", required=True)
    st.set_defaults(fn=cmd_removals_status)

    a = subparsers.add_parser("appeals", help="the appeal reviewer's answers")
    as_ = a.add_subparsers(dest="action", required=True)
    d = as_.add_parser("decide", help="uphold (reinstate the listing) or reject an appeal against a removal "
                                      "(reviewer's token: $ZEROSCAN_TOKEN)")
    d.add_argument("--brand", required=True)
    d.add_argument("--listing", required=True)
    verdict = d.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--upheld", action="store_true", help="the removal was wrong: reinstate")
    verdict.add_argument("--rejected", action="store_true", help="the removal stands")
    d.add_argument("--reason", default="")
    d.set_defaults(fn=cmd_appeals_decide)

    s = subparsers.add_parser("signals", help="a brand's open signals (listings flagged for it now)")
    ss = s.add_subparsers(dest="action", required=True)
    sl = ss.add_parser("list", help="the brand's open signals (owner's token)")
    sl.add_argument("--brand", required=True)
    sl.set_defaults(fn=cmd_signals_list)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _submit(settings: Settings, ev: FeedbackEvent) -> int:
    """Send one feedback event and print it as sent."""
    from connectors.feedback_io import FeedbackPublisher

    pub = FeedbackPublisher(settings.kafka, settings.topics.feedback)
    try:
        print(orjson.dumps(pub.submit(ev)).decode())
    finally:
        pub.close()
    return 0


class Refused(Exception):
    """The command may not run with the token given: (exit code, message)."""


def _account(settings: Settings, role):
    """The account of $ZEROSCAN_TOKEN, which must have `role`."""
    from zeroscan.accounts import AccountStore

    token = settings.token
    if not token:
        raise Refused(2, f"set {TOKEN_ENV} to your API token (zeroscan accounts create NAME)")
    account = AccountStore.at_state_dir(settings.state_dir).authenticate(token)
    if account is None:
        raise Refused(2, "invalid API token")
    if account.role is not role:
        raise Refused(3, f"this needs the token of an account with the {role.value} role; "
                         f"{account.name} has the {account.role.value} role")
    return account


def _owned_entry(settings: Settings, brand_id: str):
    """(the owner's account, the brand's registry entry) for $ZEROSCAN_TOKEN and `brand_id`."""
    from brand_signals.registry import BrandRegistry
    from zeroscan.accounts import Role

    account = _account(settings, Role.OWNER)
    try:
        registry = BrandRegistry.at_state_dir(settings.state_dir, read_only=True)
    except FileNotFoundError:
        raise Refused(2, "no brand registry yet") from None
    try:
        entry = registry.get(brand_id)
    finally:
        registry.close()
    if entry is None or entry.owner != account.name:
        raise Refused(3, f"brand {brand_id} is not registered to account {account.name}")
    return account, entry


def _refusing(fn):
    def run(args, settings: Settings) -> int:
        try:
            return fn(args, settings)
        except Refused as e:
            code, msg = e.args
            print(f"error: {msg}", file=sys.stderr)
            return code
    return run


@_refusing
def cmd_removals_create(args, settings: Settings) -> int:
    from brand_signals.registry import Privilege

    account, entry = _owned_entry(settings, args.brand)
    if entry.live is None or entry.live.deleted:
        raise Refused(3, f"brand {args.brand} is not approved yet")
    if Privilege.SELF_SERVICE_REMOVAL not in entry.grants:
        raise Refused(3, f"brand {args.brand}: self-service removal is not granted (ask the operator)")
    return _submit(settings, FeedbackEvent(FeedbackKind.BRAND_REMOVAL, args.listing, args.brand, _now_ms(),
                                           account.name, args.reason))


@_refusing
def cmd_appeals_decide(args, settings: Settings) -> int:
    from zeroscan.accounts import Role

    reviewer = _account(settings, Role.REVIEWER)
    kind = FeedbackKind.APPEAL_UPHELD if args.upheld else FeedbackKind.APPEAL_REJECTED
    return _submit(settings, FeedbackEvent(kind, args.listing, args.brand, _now_ms(), reviewer.name, args.reason))


@_refusing
def cmd_removals_status(args, settings: Settings) -> int:
    from connectors.feedback_io import brand_standing

    _owned_entry(settings, args.brand)
    print(orjson.dumps(brand_standing(settings.kafka, settings.topics.ledger, args.brand, _now_ms()),
                       option=orjson.OPT_INDENT_2).decode())
    return 0


@_refusing
def cmd_signals_list(args, settings: Settings) -> int:
    from connectors.feedback_io import open_signals

    _owned_entry(settings, args.brand)
    for d in open_signals(settings.kafka, settings.topics.decisions, args.brand):
        sys.stdout.write(orjson.dumps(d).decode() + "\n")
    return 0

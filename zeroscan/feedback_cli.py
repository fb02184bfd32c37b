"""`zeroscan removals|appeals|signals`: the brand owner's self-service removals, the appeal
reviewer's answers, and a brand's open signals and standing."""
from __future__ import annotations

import argparse
import os
import sys
import time

import orjson

from brand_signals.records import FeedbackEvent, FeedbackKind
from zeroscan.settings import Settings

TOKEN_ENV = "ZEROSCAN_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:
    r = subparsers.add_parser("removals", help="a brand owner's self-service removals")
    rs = r.add_subparsers(dest="action", required=True)
    c = rs.add_parser("create", help="remove a listing that presents your brand (token: $ZEROSCAN_TOKEN)")
    c.add_argument("--brand", required=True)
    c.add_argument("--listing", required=True)
    c.add_argument("--reason", default="")
    c.set_defaults(fn=cmd_removals_create)
    st = rs.add_parser("status", help="the brand's removal accuracy, suspension and counts")
    st.add_argument("--brand", required=True)
    st.set_defaults(fn=cmd_removals_status)

    a = subparsers.add_parser("appeals", help="the appeal reviewer's answers")
    as_ = a.add_subparsers(dest="action", required=True)
    d = as_.add_parser("decide", help="uphold (reinstate the listing) or reject an appeal against a removal")
    d.add_argument("--brand", required=True)
    d.add_argument("--listing", required=True)
    verdict = d.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--upheld", action="store_true", help="the removal was wrong: reinstate")
    verdict.add_argument("--rejected", action="store_true", help="the removal stands")
    d.add_argument("--reviewer", required=True)
    d.add_argument("--reason", default="")
    d.set_defaults(fn=cmd_appeals_decide)

    s = subparsers.add_parser("signals", help="a brand's open signals (listings flagged for it now)")
    ss = s.add_subparsers(dest="action", required=True)
    sl = ss.add_parser("list")
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


def cmd_removals_create(args, settings: Settings) -> int:
    from brand_signals.registry import BrandRegistry
    from zeroscan.accounts import AccountStore

    token = os.environ.get(TOKEN_ENV)
    if not token:
        print(f"error: set {TOKEN_ENV} to your API token (zeroscan accounts create NAME)", file=sys.stderr)
        return 2
    account = AccountStore.at_state_dir(settings.state_dir).authenticate(token)
    if account is None:
        print("error: invalid API token", file=sys.stderr)
        return 2
    try:
        registry = BrandRegistry.at_state_dir(settings.state_dir, read_only=True)
    except FileNotFoundError:
        print("error: no brand registry yet", file=sys.stderr)
        return 2
    try:
        entry = registry.get(args.brand)
    finally:
        registry.close()
    if entry is None or entry.owner != account.name:
        print(f"error: brand {args.brand} is not registered to account {account.name}", file=sys.stderr)
        return 3
    return _submit(settings, FeedbackEvent(FeedbackKind.BRAND_REMOVAL, args.listing, args.brand, _now_ms(),
                                           account.name, args.reason))


def cmd_appeals_decide(args, settings: Settings) -> int:
    kind = FeedbackKind.APPEAL_UPHELD if args.upheld else FeedbackKind.APPEAL_REJECTED
    return _submit(settings, FeedbackEvent(kind, args.listing, args.brand, _now_ms(), args.reviewer, args.reason))


def cmd_removals_status(args, settings: Settings) -> int:
    from connectors.feedback_io import brand_standing

    print(orjson.dumps(brand_standing(settings.kafka, settings.topics.ledger, args.brand, _now_ms()),
                       option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_signals_list(args, settings: Settings) -> int:
    from connectors.feedback_io import open_signals

    for d in open_signals(settings.kafka, settings.topics.decisions, args.brand):
        sys.stdout.write(orjson.dumps(d).decode() + "\n")
    return 0

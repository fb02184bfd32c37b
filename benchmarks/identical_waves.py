"""Identical re-posts end to end, warm, side by side: per checkout (NAME=CHECKOUT[,VAR=VALUE...],
as for benchmarks.ab_e2e) a job reads every update on the broker, then waves of identical
re-posts (event time only) are produced and each is measured from its production to its last
commit: listings per CPU-second of the job's process tree, and where that CPU went per thread
(/proc task times).

    python -m benchmarks.identical_waves --listings 100000 --waves 2 --rounds 2 old=<checkout> new=<checkout>

IDW_JFR=PREFIX also records the last wave of each job with Java Flight Recorder (PREFIX-NAME.jfr).
"""
import argparse, collections, dataclasses, os, re, shutil, sys, time, uuid, json
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import orjson
from benchmarks.traffic import Mix, Traffic, brand_records
from benchmarks import kafka_measures as km
from benchmarks.pipeline_bench import identical_wave, _repost, _free_port
from connectors.kafka_admin import contract_topics, ensure_topics, end_offsets, committed_offsets
from connectors.kafka_broker import KafkaBroker
from connectors.kafka_io import produce_lines
from zeroscan.settings import Settings, Topics


def threads(pid):
    """CPU seconds per thread of the job's process tree."""
    tick = os.sysconf("SC_CLK_TCK"); out = {}
    for p in km._tree(pid):
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                ts = open(f"/proc/{p}/task/{t}/stat").read()
                tr = ts.rsplit(")", 1)[1].split(); tc = ts[ts.index("(") + 1:ts.rindex(")")]
                pc = open(f"/proc/{p}/comm").read().strip()
                out[f"{p}:{pc}:{tc}:{t}"] = (int(tr[11]) + int(tr[12])) / tick
        except OSError:
            pass
    return out


def grp(k):
    pid, pc, tc, tid = k.split(":", 3)
    t = tc if tc.startswith(("Over", "Source", "Calc", "Python", "Sink")) else re.sub(r"[0-9]+", "#", tc)
    return f"{pc[:10]}|{t}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listings", type=int, default=100000)
    ap.add_argument("--waves", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("jobs", nargs="+")
    a = ap.parse_args(argv)
    base = Settings.from_env()
    work = base.state_dir / "idw"; shutil.rmtree(work, ignore_errors=True)
    broker = KafkaBroker(work, base.jar_dir / "kafka-broker", port=_free_port()); broker.up()
    tag = uuid.uuid4().hex[:6]
    S = dataclasses.replace(base, bootstrap=broker.bootstrap, kafka_properties=(), state_dir=work, topics=Topics.prefixed(f"b{tag}-"))
    ensure_topics(S.kafka, contract_topics(S.topics, partitions=4))
    try:
        brands = brand_records(1000)
        produce_lines(S.kafka, S.topics.brands, (orjson.dumps(b) for b in brands), "brand_id")
        tr = Traffic(brands, Mix()); tr.warm(max(1000, a.listings // 10))
        lines = list(tr.lines(a.listings))
        produce_lines(S.kafka, S.topics.listings, lines, "listing_id")
        wave = identical_wave([_repost(x) for x in lines])
        res = collections.defaultdict(list)
        for rnd in range(a.rounds):
            for spec in a.jobs:
                name, rest = spec.split("=", 1); parts = rest.split(","); co = parts[0]
                env = dict(p.split("=", 1) for p in parts[1:])
                s = dataclasses.replace(S, consumer_group=f"g-{name}-{rnd}", transactional_id_prefix=f"t-{name}-{rnd}-{tag}", state_dir=work / f"{name}-{rnd}")
                s.state_dir.mkdir(parents=True)
                first = sum(end_offsets(s.kafka, s.topics.listings).values())
                job = km.start_job(s, 1, "job.log", Path(co), env)
                try:
                    # warm: everything so far (this round's earlier waves included)
                    km._measure(s, job, 0, first, "job.log")
                    for w in range(a.waves):
                        jfr = os.environ.get("IDW_JFR") if w == a.waves - 1 else None
                        if jfr:
                            jp = next(p for p in km._tree(job.pid) if open(f"/proc/{p}/comm").read().strip() == "java")
                            os.system(f"jcmd {jp} JFR.start name=idw settings=profile filename={jfr}-{name}.jfr >/dev/null")
                        snap0 = threads(job.pid)
                        produce_lines(s.kafka, s.topics.listings, wave, "listing_id")
                        t0 = time.monotonic()
                        marks, peak, _ = km.poll_committed(s, job, first, first + len(wave), "job.log")
                        snap1 = threads(job.pid)
                        if jfr:
                            os.system(f"jcmd {jp} JFR.stop name=idw >/dev/null")
                        tot0 = sum(snap1.values()) - sum(v for k, v in snap0.items())
                        r = {"listings_per_cpu_s": round(len(wave) / tot0), "wall_s": round(time.monotonic() - t0, 1),
                             "cores_busy": round(tot0 / (time.monotonic() - t0), 2)}
                        first += len(wave)
                        res[name].append(r["listings_per_cpu_s"])
                        d = collections.Counter()
                        for k, v in snap1.items(): d[grp(k)] += v - snap0.get(k, 0.0)
                        tot = sum(d.values())
                        print(f"round {rnd} {name} wave {w}: {r}  threads cpu {tot:.1f}s", flush=True)
                        for g, v in d.most_common(12): print(f"     {v:6.1f}s {100*v/tot:5.1f}%  {g}")
                finally:
                    km.stop_job(job)
        print(json.dumps(res))
    finally:
        broker.down()


if __name__ == "__main__":
    main()

"""Print the engine's whole state after a simulated stream, for `test_compiled.py`.

Run as a script in a fresh interpreter (CCPULSE_PURE_PYTHON decides whether the compiled
modules load): the simulator's records, some delivered late and some twice, bad records
among them, fed through the engine with FCR records routed and the clock advanced in
cycles. The output is the buckets, the interactions' applied facts, the agents' and
customers' facts and the dead-letter reasons, floats by `repr`: equal output means equal
numbers, bit for bit.
"""

from __future__ import annotations

import json
import random
import sys
from datetime import datetime, timezone

from stream import config
from stream._compiled import compiled_modules
from stream.kpi.engine import Engine, encode_customer_record
from stream.simulate import SimConfig, Simulator

KIND = {"cc.interactions": "interactions", "cc.agent-states": "agents",
        "cc.surveys": "surveys"}


def records(n: int, seed: int) -> list:
    sim = Simulator(SimConfig(seed=seed, rate=3.0, start=datetime(2026, 3, 29, 0, 30,
                                                                   tzinfo=timezone.utc),
                              duration_s=4 * 3600, bad_rate=0.01))
    out = []
    for rec in sim:
        out.append(rec)
        if len(out) >= n:
            break
    rnd = random.Random(seed)
    # late delivery: a tenth of the records swapped up to 200 places later; 2 % sent twice
    for i in range(len(out)):
        if rnd.random() < 0.1:
            j = min(len(out) - 1, i + rnd.randrange(1, 200))
            out[i], out[j] = out[j], out[i]
    for i in sorted(rnd.sample(range(len(out)), len(out) // 50), reverse=True):
        out.insert(min(len(out), i + rnd.randrange(1, 3000)), out[i])
    return out


def canonical(store) -> dict:
    def buckets(d: dict) -> list:
        return sorted([list(map(str, k)), [repr(v) for v in acc]] for k, acc in d.items())

    out = {name: buckets(getattr(store, name))
           for name in ("minutes", "intervals", "qminutes", "qintervals")}
    for name in ("ix", "agents", "customers"):
        items = getattr(store, name, None)
        if items is not None:
            out[name] = sorted([key, repr(item.facts)] for key, item in items.items())
    return out


def main(n: int, seed: int) -> None:
    engine = Engine(config.load(), scorer=lambda text, lang: (len(text) % 21 - 10) / 10)
    dead: list[str] = []
    observed: list[str] = []
    duplicates = 0
    recs = records(n, seed)
    for i, rec in enumerate(recs):
        topic = rec.topic if rec.topic in KIND else "cc.interactions"
        engine.ingest(KIND[topic], rec.value, int.from_bytes(rec.key[:2], "big") % 4, i, topic)
        if i % 2000 == 1999 or i == len(recs) - 1:
            # a publish cycle: FCR records delivered, clocks moved, outputs taken
            for customer, iid, fcr in engine.take_customer_records():
                engine.ingest("customers", encode_customer_record(customer, iid, fcr),
                              int(customer[:8], 16) % 4, i, "cc.customers")
            engine.advance(max(s.max_ts for s in engine.stores()))
            letters, obs, _, dups = engine.take_outputs()
            dead += [d.reason for d in letters]
            observed += [repr(o) for o in obs]
            duplicates += dups
    state = {"stores": {s.name: canonical(s) for s in engine.stores()},
             "dead": sorted(dead), "observed": sorted(observed), "duplicates": duplicates,
             "compiled": compiled_modules()}
    json.dump(state, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))

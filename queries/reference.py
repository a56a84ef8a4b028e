import json
from math import fsum
from collections import defaultdict
def load(p): return [json.loads(l) for l in open(p)]
clicks = load("inputs/clicks.jsonl"); users = load("inputs/users.jsonl"); visits = load("inputs/visits.jsonl")
def out(name): return [json.loads(l) for l in open(f"out/{name}.jsonl")]
def windows(s, e, size, hop):
    k = (s - size) // hop + 1
    while k * hop < e:
        yield k * hop
        k += 1
def check(name, want, ordered=True):
    got = out(name)
    if not ordered:
        key = lambda d: json.dumps(d, sort_keys=True)
        got = sorted(got, key=key); want = sorted(want, key=key)
    ok = got == want
    print(name, "OK" if ok else "DIFF", len(got), len(want))
    if not ok:
        for g, w in zip(got, want):
            if g != w: print(" got", g, "\n want", w); break
# tumbling_count
g = defaultdict(int)
for c in clicks:
    for w in windows(c["ts"], c["ts"] + 1, 10_000_000, 10_000_000): g[(w, c["user"])] += 1
check("tumbling_count", [{"_start": w, "_end": w + 10_000_000, "user": u, "n": n} for (w, u), n in sorted(g.items())])
# hopping_aggregates
g = defaultdict(list)
for c in clicks:
    if c["amount"] > 10:
        for w in windows(c["ts"], c["ts"] + 1, 10_000_000, 2_000_000): g[(w, c["user"])].append(c)
want = []
for (w, u), cs in sorted(g.items()):
    a = [c["amount"] for c in cs]
    want.append({"_start": w, "_end": w + 10_000_000, "user": u, "n": len(cs), "urls": len({c["url"] for c in cs}), "total": sum(a), "least": min(a), "top": max(c["price"] for c in cs), "mean": sum(a) / len(a)})
check("hopping_aggregates", want)
# global_count
g = defaultdict(list)
for c in clicks:
    for w in windows(c["ts"], c["ts"] + 1, 20_000_000, 20_000_000): g[w].append(c)
check("global_count", [{"_start": w, "_end": w + 20_000_000, "n": len(cs), "last_url": max(c["url"] for c in cs), "spent": fsum(c["price"] for c in cs), "mean_price": fsum(c["price"] for c in cs) / len(cs)} for w, cs in sorted(g.items())])
# filter_project
check("filter_project", [{"user": c["user"], "doubled": c["amount"] * 2, "page": c["url"].upper(), "marked": c["price"] + 0.5} for c in clicks if c["price"] >= 1.5 and c["user"] != "bo"])
# inner_join: users live 30s
want = []
for u in users:
    us, ue = u["ts"], u["ts"] + 30_000_000
    for c in clicks:
        cs, ce = c["ts"], c["ts"] + 1
        if u["user"] == c["user"] and max(us, cs) < min(ue, ce):
            want.append({"_start": max(us, cs), "_end": min(ue, ce), "user": c["user"], "tier": u["tier"], "amount": c["amount"]})
check("inner_join", want, ordered=False)
# left_join with amount > 40
want = []
for u in users:
    us, ue = u["ts"], u["ts"] + 30_000_000
    m = False
    for c in clicks:
        cs, ce = c["ts"], c["ts"] + 1
        if u["user"] == c["user"] and c["amount"] > 40 and max(us, cs) < min(ue, ce):
            m = True
            want.append({"_start": max(us, cs), "_end": min(ue, ce), "user": u["user"], "tier": u["tier"], "url": c["url"]})
    if not m:
        want.append({"_start": us, "_end": ue, "user": u["user"], "tier": u["tier"], "url": None})
check("left_join", want, ordered=False)
# interval_input
g = defaultdict(int)
for v in visits:
    for w in windows(v["start"], v["stop"], 20_000_000, 10_000_000): g[(w, v["page"])] += 1
check("interval_input", [{"_start": w, "_end": w + 20_000_000, "page": p, "visits": n} for (w, p), n in sorted(g.items())])
# union_all: clicks with amount > 50 and users, in merge order (start, input, seq)
rows = [(c["ts"], 0, i, {"_start": c["ts"], "_end": c["ts"] + 1, "user": c["user"], "what": c["url"]}) for i, c in enumerate(clicks) if c["amount"] > 50]
rows += [(u["ts"], 1, i, {"_start": u["ts"], "_end": u["ts"] + 1, "user": u["user"], "what": u["tier"]}) for i, u in enumerate(users)]
rows.sort(key=lambda r: r[:3])
check("union_all", [r[3] for r in rows])
g = defaultdict(int)
for r in rows:
    w = r[0] // 15_000_000 * 15_000_000
    g[(w, r[3]["user"])] += 1
check("union_all.counts", [{"_start": w, "_end": w + 15_000_000, "user": u, "n": n} for (w, u), n in sorted(g.items())])
# lifetimes: a shift back by 2 s, a 3 s lifetime, their join; windows as points
early = [(c["ts"] - 2_000_000, c["ts"] - 2_000_000 + 1, c) for c in clicks if c["amount"] > 45]
long = [(c["ts"], c["ts"] + 3_000_000, c) for c in clicks if c["amount"] < 5]
want = []
for (ls, le, l) in long:
    for (es, ee, e) in early:
        if l["user"] == e["user"] and max(ls, es) < min(le, ee):
            want.append({"_start": max(ls, es), "_end": min(le, ee), "user": l["user"], "small": l["amount"], "big": e["amount"]})
check("lifetimes", want, ordered=False)
g = defaultdict(int)
for c in clicks:
    g[(c["ts"] // 10_000_000 * 10_000_000, c["user"])] += 1
check("lifetimes.points", [{"_start": w, "_end": w + 1, "user": u, "n": n} for (w, u), n in sorted(g.items())])
# process_reduce: bot_filter's rule, then running_sum's totals per channel
sales = load("inputs/sales.jsonl")
def human(s): return not any(m in s["agent"].lower() for m in ("bot", "crawler", "spider", "headless")) and not s["ip"].startswith("10.66.")
totals, want = defaultdict(lambda: [0, 0.0]), []
for s in sales:
    if human(s):
        t = totals[s["channel"]]; t[0] += 1; t[1] += s["eur"]
        want.append({"_start": s["ts"], "_end": s["ts"] + 1, "channel": s["channel"], "count": t[0], "sum": t[1]})
check("process_reduce", want)
# scalar_calls: price_band's rule, in expressions, a filter and a group key
def band(x): return "low" if x < 10 else "mid" if x < 100 else "high"
check("scalar_calls", [{"user": s["user"], "half_band": band(s["eur"] / 2), "band": band(s["eur"]).upper()} for s in sales if band(s["eur"]) != "low"])
g = defaultdict(list)
for s in sales:
    g[(s["ts"] // 10_000_000 * 10_000_000, band(s["eur"]))].append(s["eur"])
check("scalar_calls.counts", [{"_start": w, "_end": w + 10_000_000, "band": b, "n": len(e), "total": fsum(e)} for (w, b), e in sorted(g.items())])
# top_n: per window, the first rows by the order, ties broken by the other columns
g = defaultdict(list)
for c in clicks:
    for w in windows(c["ts"], c["ts"] + 1, 10_000_000, 2_000_000): g[(w, c["url"])].append(c["amount"])
per_window = defaultdict(list)
for (w, u), a in g.items(): per_window[w].append((-len(a), -sum(a), u))
want = []
for w in sorted(per_window):
    for n, t, u in sorted(per_window[w])[:2]:
        want.append({"_start": w, "_end": w + 10_000_000, "url": u, "n": -n, "total": -t})
check("top_n", want, ordered=False)
g = defaultdict(int)
for c in clicks:
    for w in windows(c["ts"], c["ts"] + 1, 5_000_000, 5_000_000): g[(w, c["user"])] += 1
per_window = defaultdict(list)
for (w, u), n in g.items(): per_window[w].append((-n, u))
check("top_n.busiest", [{"_start": w, "_end": w + 5_000_000, "user": min(per_window[w])[1], "n": -min(per_window[w])[0]} for w in sorted(per_window)])
per_window = defaultdict(list)
for c in clicks:
    for w in windows(c["ts"], c["ts"] + 1, 10_000_000, 10_000_000): per_window[w].append((-c["amount"], c["user"], c["url"]))
check("top_n.largest", [{"_start": w, "_end": w + 10_000_000, "user": min(r)[1], "url": min(r)[2], "amount": -min(r)[0]} for w, r in sorted(per_window.items())])
# session_windows: per user, events whose [ts, ts + 1 + gap) overlap form a session
gap = 3_000_000
def sessions_of(u):
    sessions = []
    for c in sorted((c for c in clicks if c["user"] == u), key=lambda c: c["ts"]):
        if sessions and c["ts"] < sessions[-1][1]:
            sessions[-1][1] = max(sessions[-1][1], c["ts"] + 1 + gap); sessions[-1][2].append(c)
        else:
            sessions.append([c["ts"], c["ts"] + 1 + gap, [c]])
    return sessions
want = []
for u in sorted({c["user"] for c in clicks}):
    for s, e, cs in sessions_of(u):
        want.append({"_start": s, "_end": e, "user": u, "n": len(cs), "urls": len({c["url"] for c in cs}), "total": sum(c["amount"] for c in cs)})
check("session_windows", want, ordered=False)
# user_aggregate: the median component per user in hopping windows and in sessions
def median(v):
    v = sorted(v)
    return None if not v else v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
g = defaultdict(list)
for c in clicks:
    for w in windows(c["ts"], c["ts"] + 1, 10_000_000, 5_000_000): g[(w, c["user"])].append(c)
check("user_aggregate", [{"_start": w, "_end": w + 10_000_000, "user": u, "median_price": median([c["price"] for c in cs]), "median_spend": median([c["price"] * c["amount"] for c in cs]), "n": len(cs)} for (w, u), cs in sorted(g.items())])
want = []
for u in sorted({c["user"] for c in clicks}):
    for s, e, cs in sessions_of(u):
        want.append({"_start": s, "_end": e, "user": u, "median_price": median([c["price"] for c in cs])})
check("user_aggregate.sessions", want, ordered=False)
g = defaultdict(list)
for c in clicks:
    for w in windows(c["ts"], c["ts"] + 1, 20_000_000, 10_000_000): g[w].append(c)
check("user_aggregate.global", [{"_start": w, "_end": w + 20_000_000, "median_price": median([c["price"] for c in cs]), "users": len({c["user"] for c in cs})} for w, cs in sorted(g.items())])

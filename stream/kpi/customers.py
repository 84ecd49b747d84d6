"""Repeat-based FCR and time to resolution, keyed by (hashed) customer.

Interaction shards send one small record per contact of a known customer — first offered,
wrap-up moment, scope and disposition — to the internal `cc.customers` topic keyed by the
customer hash. Here each customer keeps those records (upserted by interaction id, so a
replayed or repeated record changes nothing) and re-derives its FCR and TTR facts whenever
one arrives or a horizon passes, applying only the difference to its buckets:

* a handled contact with wrap-up w is *repeated* when another contact of the customer is
  first offered in (w, w + horizon]; FCR = (handled − repeated) / handled, counted at w in
  the contact's scope, corrected when the repeat arrives; until w + horizon and while not
  repeated it is `fcr_pending`;
* TTR: chains of handled contacts (by first offered), each offered within the horizon of
  the chain's latest wrap-up; a chain resolves at a `resolved` disposition, or when the
  next contact comes too late, or when the horizon of its latest wrap-up passes.

A customer with no activity for horizon + retention (+1 h) is forgotten; its facts stay.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field

from . import buckets as b
from .store import BucketStore


@dataclass(slots=True)
class Contact:
    first_offered: float
    handled: float | None = None  # wrap-up moment of the final leg
    key: tuple = ("", "", "")  # (queue, channel, agent) of the final leg
    disposition: str | None = None


@dataclass(slots=True)
class Customer:
    contacts: dict[str, Contact] = field(default_factory=dict)
    facts: list = field(default_factory=list)
    last_activity: float = 0.0
    due: float | None = None  # when its facts next change: its live entry in the deadline heap


def derive(contacts: dict[str, Contact], now: float, horizon: float) -> tuple[list, float | None]:
    """FCR and TTR facts of one customer's contacts at `now`, and when they next change."""
    facts = []
    next_change: float | None = None

    def later(t: float) -> None:
        nonlocal next_change
        if t > now and (next_change is None or t < next_change):
            next_change = t

    offers = sorted(c.first_offered for c in contacts.values())
    handled = sorted(((iid, c) for iid, c in contacts.items() if c.handled is not None),
                     key=lambda kv: (kv[1].first_offered, kv[0]))
    for iid, c in handled:
        w = c.handled
        repeated = any(w < t <= w + horizon for t in offers)
        pending = not repeated and now < w + horizon
        if pending:
            later(w + horizon)
        facts.append((c.key, w, ((b.FCR_HANDLED, 1.0), (b.FCR_REPEATED, 1.0 if repeated else 0.0),
                                 (b.FCR_PENDING, 1.0 if pending else 0.0))))
    chain_start: float | None = None
    chain_last: Contact | None = None

    def resolve(contact: Contact, start: float) -> None:
        ttr = round(contact.handled - start, 6)  # type: ignore[operator]
        facts.append((contact.key, contact.handled,
                       ((b.TTR_N, 1.0), (b.TTR_SUM, ttr), (b.ttr_slot(ttr), 1.0))))

    for _, c in handled:
        if chain_last is not None and c.first_offered > chain_last.handled + horizon:
            resolve(chain_last, chain_start)  # type: ignore[arg-type]
            chain_start, chain_last = None, None
        if chain_last is None:
            chain_start, chain_last = c.first_offered, c
        elif c.handled >= chain_last.handled:  # type: ignore[operator]
            chain_last = c
        if c.disposition == "resolved":
            resolve(c, chain_start)  # type: ignore[arg-type]
            chain_start, chain_last = None, None
    if chain_last is not None:
        if now >= chain_last.handled + horizon:  # type: ignore[operator]
            resolve(chain_last, chain_start)  # type: ignore[arg-type]
        else:
            later(chain_last.handled + horizon)  # type: ignore[operator]
    return [(tuple(k), ts, d) for k, ts, d in facts], next_change


class CustomerShard(BucketStore):
    """State of one `cc.customers` partition."""

    def __init__(self, retention_s: float, minute_retention_s: float, horizon_s: float,
                 name: str = "") -> None:
        super().__init__(retention_s, minute_retention_s)
        self.name = name
        self.horizon = horizon_s
        self.customers: dict[str, Customer] = {}
        self.dirty_customers: set[str] = set()
        self.deadlines: list[tuple[float, str]] = []
        # (last activity, customer) of every customer, lowest first: who can be forgotten
        # is popped off the front, not found by scanning every customer on every cycle
        self.forget_queue: list[tuple[float, str]] = []
        self.deadletters: list = []
        self.new_events: Counter = Counter()
        self.duplicates = 0

    def state_sizes(self) -> dict[str, int]:
        return {**BucketStore.state_sizes(self), "customers": len(self.customers)}

    def upsert(self, customer: str, iid: str, contact: Contact | None) -> str:
        """Apply the latest record of one contact (None removes it)."""
        cust = self.customers.get(customer)
        new = cust is None
        if new:
            if contact is None:
                return "ok"
            cust = self.customers[customer] = Customer()
        if contact is None:
            cust.contacts.pop(iid, None)
        elif cust.contacts.get(iid) == contact:
            self.duplicates += 1
            return "duplicate"
        else:
            cust.contacts[iid] = contact
        if contact is not None:
            last = max(cust.last_activity, contact.first_offered, contact.handled or 0.0)
            if new or last != cust.last_activity:  # its older entry goes stale (advance)
                heapq.heappush(self.forget_queue, (last, customer))
            cust.last_activity = last
            if contact.first_offered > self.max_ts:
                self.max_ts = contact.first_offered
        self._settle(customer, cust)
        return "ok"

    def _forget_before(self, now: float) -> float:
        """Contacts and customers last active before this can no longer change any kept
        bucket: past the FCR horizon, the retention (late events) and an hour of ACW."""
        return now - self.horizon - self.retention_s - 3600.0

    def _settle(self, name: str, cust: Customer) -> None:
        # contacts past the point where anything can still change them are dropped, or a
        # customer who keeps calling keeps every contact ever (1 M-call replay: RSS grew
        # without bound, derive went quadratic); contacts linked to them are older than the
        # retention too, so their re-derived facts land in no bucket
        forget_before = self._forget_before(self.clock)
        old = [iid for iid, c in cust.contacts.items()
               if max(c.first_offered, c.handled or 0.0) < forget_before]
        for iid in old:
            del cust.contacts[iid]
        new, next_change = derive(cust.contacts, self.clock, self.horizon)
        self.reconcile(cust.facts, new)
        cust.facts = new
        if next_change is not None and next_change != cust.due:
            heapq.heappush(self.deadlines, (next_change, name))
        cust.due = next_change  # any other entry of this customer is stale (see advance)
        self.dirty_customers.add(name)

    def advance(self, now: float) -> None:
        if now < self.clock:
            return
        self.clock = now
        while self.deadlines and self.deadlines[0][0] <= now:
            due, name = heapq.heappop(self.deadlines)
            cust = self.customers.get(name)
            # a customer settled again since this entry was pushed has a newer one: skip
            # (every contact pushed one; re-deriving at each of them was wasted work, and
            # the entries piled up: 1 M-call replay, 177 k → 209 k and rising)
            if cust is not None and cust.due == due:
                cust.due = None  # popped: _settle pushes its next one, whatever it is
                self._settle(name, cust)
        if len(self.deadlines) > 2 * len(self.customers) + 1024:
            # stale entries (a due that moved, a customer forgotten) wait for their time;
            # past twice the live ones the heap is rebuilt from the live ones
            self.deadlines = [(c.due, n) for n, c in self.customers.items() if c.due is not None]
            heapq.heapify(self.deadlines)
        # a customer is forgotten once nothing can change its facts any more: its horizon has
        # passed and even a late event (retention) or an ACW timeout can no longer touch it.
        # Every customer has an entry at its last activity, so the ones popped here are all
        # of them: the same customers a scan of every customer on every cycle found.
        forget_before = self._forget_before(now)
        queue, customers = self.forget_queue, self.customers
        while queue and queue[0][0] < forget_before:
            _, name = heapq.heappop(queue)
            cust = customers.get(name)
            # stale entries (the customer was active since, or is gone) are skipped
            if cust is not None and cust.last_activity < forget_before:
                del customers[name]
                self.dirty_customers.add(name)
        if len(queue) > 2 * len(customers) + 1024:
            self._rebuild_forget_queue()
        self.prune_buckets(now)

    def _rebuild_forget_queue(self) -> None:
        self.forget_queue = [(c.last_activity, n) for n, c in self.customers.items()]
        heapq.heapify(self.forget_queue)

    def rebuild_deadlines(self) -> None:
        """The two derived queues, after a restore: when each customer's facts next change,
        and when it can be forgotten."""
        self._rebuild_forget_queue()
        self.deadlines = []
        for name, cust in self.customers.items():
            _, next_change = derive(cust.contacts, self.clock, self.horizon)
            cust.due = next_change
            if next_change is not None:
                self.deadlines.append((next_change, name))
        heapq.heapify(self.deadlines)

    def take_outputs(self):
        out = (self.deadletters, [], self.new_events, self.duplicates)
        self.deadletters, self.new_events, self.duplicates = [], Counter(), 0
        return out

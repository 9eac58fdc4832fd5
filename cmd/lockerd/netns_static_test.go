package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

// netnsStaticKeys are the keys of TestNetnsStaticFaults: those a strict
// federation runs on static shares (a sliding key, gcra keys of the
// default burst and of burst 1, a key of two limits) and a fixed template
// with a few keys made from it, whose keys trade tokens between members
// as configured fixed keys do. names are the keys the clients take from.
var netnsStaticKeys = []struct {
	spec  string
	names []string
}{
	{"s=30/1s/sliding", []string{"s"}},
	{"g=30/1s/gcra", []string{"g"}},
	{"g1=6/1s/gcra:1", []string{"g1"}},
	{"tenant:*=30/1s", []string{"tenant:a", "tenant:b", "tenant:c"}},
	{"m=12/500ms+30/2s/sliding", []string{"m"}},
}

const (
	// netnsStaticWorkers is the client goroutines per key and member.
	netnsStaticWorkers = 2
	// netnsStaticVictim is the member each fault hits: rank 0, the only
	// member with a share of g1's burst of 1, so that every key loses
	// grants to the fault.
	netnsStaticVictim = 0
	// netnsStaticMinUse is the least part of what the members' shares
	// allow over the load that the clients must have been granted: the
	// run was not idle.
	netnsStaticMinUse = 0.2
	// netnsStaticWindow is the window the load is placed by (see
	// netnsStaticPhase): that of every key of netnsStaticKeys but m,
	// whose windows divide it or are a multiple of it.
	netnsStaticWindow = time.Second
	// netnsStaticPhase is how long after a grant of the victim a fault
	// starts. The victim's client starts first, just after a window
	// starts (fixed windows start at multiples of the window since the
	// epoch), and the victim grants every key's share at once then, and
	// again a window later: a kill soon after such grants and a restart
	// well within the window make a restarted member that forgot its
	// earlier run's grants go over (without the fence, the kill test
	// fails).
	netnsStaticPhase = 100 * time.Millisecond
	// netnsStaticKillTimeout is the clients' request timeout in the kill
	// test: a request lost with the killed process must not hold its
	// worker back from the restarted one for long. Elsewhere the timeout
	// is netnsTimeout, longer than a freeze, so that the requests a
	// frozen member got are answered when it resumes.
	netnsStaticKillTimeout = 500 * time.Millisecond
)

// netnsSleepToPhase sleeps until the next instant that lies a whole number of
// netnsStaticWindow after ref: it places the load, it awaits nothing.
func netnsSleepToPhase(ref time.Time) {
	w := int64(netnsStaticWindow)
	d := (ref.UnixNano() - time.Now().UnixNano()) % w
	if d < 0 {
		d += w
	}
	time.Sleep(time.Duration(d))
}

// netnsAnswer is one answer a client recorded; the server decided it in
// [lo, hi], Unix ns.
type netnsAnswer struct {
	key    string
	result byte // g (go), s (sorry), e (error answer), l (no answer)
	lo, hi int64
	window int64
	member int
}

// TestNetnsStaticFaults runs a strict federation of three lockerd members,
// each in its own network namespace, with sliding, gcra, fixed template
// and multi-limit keys (strict mode runs the sliding, gcra and multi-limit
// ones on each member's static share, exchanging nothing, and trades
// tokens of the keys made from the fixed template), loads every key on every member from
// clients that honour RETRY_MS, and hits member 0 with each fault of
// TestNetnsFaults: cut off from the others for 2s, frozen (SIGSTOP) for
// 2s, or killed (SIGKILL) and started again with the same id and
// configuration. The clients
// record every answer with the clock readings around it, and the test
// checks each key by its definition, by brute force over all the grants
// of the cluster (and of each member against its share, for the keys on
// static shares):
//
//   - sliding: no interval [a, a+WINDOW) holds more than LIMIT grants;
//   - gcra: no interval of length d holds more than BURST + floor(d/T)
//     grants, T = WINDOW/LIMIT, as PROTOCOL.md promises (not LIMIT per
//     WINDOW: one gcra counter grants up to BURST+LIMIT-1 in a window's
//     length);
//   - fixed (each key made from the template): no epoch-aligned window
//     holds more than LIMIT, by the clients' clock and by the window the
//     answers name;
//   - a key of several limits: each limit's bound, as above.
//
// A grant counts in an interval only if the whole span from its send to
// its answer lies inside (see grantSpan), so an over found is real; a
// request sent to the victim while it was seen stopped or dead is known
// to be decided after it resumed or started again. What the check cannot
// see: overs spread over nearly the interval's length (within the round
// trips at its ends) and grants whose answer was lost (requests in flight
// to the killed process). The test also asserts that the fault happened
// (the members saw the cut; every thread of the frozen member was stopped
// and it answered nothing meanwhile, then answered the requests sent
// during the freeze; the restarted member answered and granted again),
// that at least a fifth of what the shares allow was granted, and, for
// the sliding and fixed keys, that some interval held at least half the
// limit by the check's count (the round trips were short enough for the
// check to see anything).
//
//	go test -race -count=1 -run 'TestNetnsStaticFaults|TestNetnsNarrow|TestGrantChecks' -v ./cmd/lockerd/
func TestNetnsStaticFaults(t *testing.T) {
	ipBin := netnsSkip(t)
	nw := newNetnsNet(t, ipBin, netnsMembers)
	bins := netnsBuild(t)
	port := 7500
	for _, f := range netnsFaults {
		port += 10
		t.Run(f.name, func(t *testing.T) {
			runNetnsStatic(t, nw, bins, port, f.name, f.do)
		})
	}
}

// runNetnsStatic runs one strict cluster of netnsStaticKeys on ports from
// port, applies the fault to member netnsStaticVictim under load, and
// checks every key.
func runNetnsStatic(t *testing.T, nw *netnsNet, bins netnsBins, port int, fault string,
	do func(*testing.T, *netnsCluster, int) netnsFaultEvents) {
	var specs, args []string
	cfgs := make([]locker.KeyConfig, len(netnsStaticKeys))
	var longest time.Duration // the longest window of any limit
	for i, k := range netnsStaticKeys {
		specs = append(specs, k.spec)
		for _, n := range k.names {
			args = append(args, "-key", n, "-workers", strconv.Itoa(netnsStaticWorkers))
		}
		cfg, err := locker.ParseKeySpec(k.spec)
		if err != nil {
			t.Fatal(err)
		}
		cfgs[i] = cfg
		for _, p := range cfg.Parts() {
			longest = max(longest, p.Window)
		}
	}
	c := newNetnsCluster(nw, bins, "strict", port, specs)
	if fault == "kill" {
		c.clientTimeout = netnsStaticKillTimeout
	}
	for i := range c.members {
		c.start(t, i, fmt.Sprintf("m%d", i))
	}
	c.awaitReady(t)

	clients := make([]*netnsHammer, len(c.members))
	netnsSleepToPhase(time.Unix(0, 0))
	clients[netnsStaticVictim] = c.startClient(t, netnsStaticVictim, "record", args...)
	victimStarted := time.Now()
	for i := range clients {
		if i != netnsStaticVictim {
			clients[i] = c.startClient(t, i, "record", args...)
		}
	}
	loadStart := time.Now()
	time.Sleep(netnsSteady) // load before the fault
	netnsSleepToPhase(victimStarted.Add(netnsStaticPhase))
	faultStart := time.Now()
	ev := do(t, c, netnsStaticVictim)
	faultEnd := time.Now()
	c.awaitReady(t)
	healed := time.Now()
	// A restarted member grants nothing for up to the longest window
	// (its fence), then it must be seen granting again.
	time.Sleep(time.Until(netnsLater(ev.loadUntil, healed.Add(longest+netnsStaticWindow)))) // load after the fault
	var answers []netnsAnswer
	for i, cl := range clients {
		answers = append(answers, parseNetnsAnswers(t, cl.output(t), i)...)
	}
	loadEnd := time.Now()
	for i, m := range c.members {
		if !m.lockerd.running() {
			t.Errorf("member %d exited: %v\nstderr:\n%s", i, m.lockerd.err, m.lockerd.stderr.String())
		}
	}
	t.Logf("fault %v, healed (every member ready) %v after it ended, load %v",
		faultEnd.Sub(faultStart).Round(time.Millisecond), healed.Sub(faultEnd).Round(time.Millisecond),
		loadEnd.Sub(loadStart).Round(time.Millisecond))
	checkNetnsFault(t, fault, answers, ev, faultStart.UnixNano(), faultEnd.UnixNano())

	for i, k := range netnsStaticKeys {
		cfg := cfgs[i]
		t.Run(cfg.Name, func(t *testing.T) {
			for _, name := range k.names {
				checkNetnsStaticKey(t, cfg, name, answers, len(c.members), faultEnd.UnixNano(), loadEnd.Sub(loadStart))
			}
		})
	}
}

// parseNetnsAnswers parses the record lines of member's client.
func parseNetnsAnswers(t *testing.T, lines []string, member int) []netnsAnswer {
	t.Helper()
	as := make([]netnsAnswer, 0, len(lines))
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 6 || f[0] != "a" || len(f[2]) != 1 || !strings.Contains("gsel", f[2]) {
			t.Fatalf("client of member %d: unexpected line %q", member, l)
		}
		lo, err1 := strconv.ParseInt(f[3], 10, 64)
		hi, err2 := strconv.ParseInt(f[4], 10, 64)
		w, err3 := strconv.ParseInt(f[5], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || hi < lo {
			t.Fatalf("client of member %d: bad line %q", member, l)
		}
		as = append(as, netnsAnswer{key: f[1], result: f[2][0], lo: lo, hi: hi, window: w, member: member})
	}
	return as
}

// checkNetnsFault checks that the fault happened as the victim's answers
// show it, and narrows the spans of the answers to requests the victim
// got while it could decide nothing (see netnsNarrow).
func checkNetnsFault(t *testing.T, fault string, as []netnsAnswer, ev netnsFaultEvents, faultStart, faultEnd int64) {
	t.Helper()
	var during, after int
	for _, a := range as {
		if a.member != netnsStaticVictim || a.result == 'l' {
			continue
		}
		if a.lo >= faultStart && a.hi <= faultEnd {
			during++
		}
		if a.lo >= faultEnd {
			after++
		}
	}
	held, early := netnsNarrow(as, netnsStaticVictim, ev)
	t.Logf("member %d answered %d requests within the fault, %d after it; %d sent while it was stopped or dead, answered after",
		netnsStaticVictim, during, after, held)
	if after == 0 {
		t.Errorf("%s: member %d answered nothing after the fault", fault, netnsStaticVictim)
	}
	switch fault {
	case "cut":
		if during == 0 {
			t.Errorf("cut: member %d answered its clients nothing while cut off", netnsStaticVictim)
		}
	case "freeze":
		if held == 0 {
			t.Errorf("freeze: no request reached member %d while it was stopped", netnsStaticVictim)
		}
	}
	if early > 0 {
		t.Errorf("%s: member %d answered %d requests sent after it was seen stopped or dead before it resumed or restarted",
			fault, netnsStaticVictim, early)
	}
}

// netnsNarrow moves the start of the span of each answer of victim to a
// request sent from ev.quietFrom to ev.quietTo up to ev.quietTo: the
// victim decided nothing meanwhile, so it decided those after. Without
// this, a grant answered after a 2s freeze spans the freeze, longer than
// any window, and no check could count it. It returns how many answers
// it moved, and how many of those came back before ev.quietTo (none can,
// unless the victim was not stopped or dead after all).
func netnsNarrow(as []netnsAnswer, victim int, ev netnsFaultEvents) (held, early int) {
	if ev.quietFrom.IsZero() {
		return 0, 0
	}
	from, to := ev.quietFrom.UnixNano(), ev.quietTo.UnixNano()
	for i := range as {
		a := &as[i]
		if a.member != victim || a.result == 'l' || a.lo < from || a.lo > to {
			continue
		}
		held++
		if a.hi < to {
			early++
		}
		a.lo = to
	}
	return held, early
}

// netnsStaticShares returns member i's share of the key's limit and burst in a
// federation of members (see locker.Share, locker.Counter.EnableFederation):
// a gcra part without a burst set has a burst of its limit.
func netnsStaticShares(p locker.Part, members, i int) (limit, burst int64) {
	limit = locker.Share(p.Limit, members, i)
	if p.Burst == 0 {
		return limit, limit
	}
	return limit, locker.Share(p.Burst, members, i)
}

// checkNetnsStaticKey checks the grants of key name (configured by cfg,
// or made from the template cfg) over the cluster and over each member,
// against each of its limits, and logs the figures.
func checkNetnsStaticKey(t *testing.T, cfg locker.KeyConfig, name string, as []netnsAnswer, members int,
	faultEnd int64, load time.Duration) {
	t.Helper()
	var all []grantSpan
	per := make([][]grantSpan, members)
	errs := make([]int, members)
	var lost, errAnswers, victimAfter int
	for _, a := range as {
		if a.key != name {
			continue
		}
		switch a.result {
		case 'g':
			g := grantSpan{lo: a.lo, hi: a.hi, window: a.window, member: a.member}
			all = append(all, g)
			per[a.member] = append(per[a.member], g)
			if a.member == netnsStaticVictim && a.lo >= faultEnd {
				victimAfter++
			}
		case 'e':
			errs[a.member]++
			errAnswers++
		case 'l':
			lost++
		}
	}
	// What the members' shares allow over the load, for the utilisation:
	// for each member, the least its limits allow.
	capacity := make([]float64, members)
	for i := range capacity {
		capacity[i] = math.Inf(1)
	}
	canGrant := make([]bool, members)
	var seen int64 // 2 × the most grants of an interval, over the limit
	parts := cfg.Parts()
	for j, p := range parts {
		label := name
		if len(parts) > 1 {
			label = fmt.Sprintf("%s part %d", name, j)
		}
		burst := p.Burst
		if burst == 0 {
			burst = p.Limit
		}
		o := netnsCheckPart(p, all, p.Limit, burst, len(parts) == 1)
		if o.over() {
			t.Errorf("%s (%s): the federation went over: %v (members %s)", label, p, o, grantSummary(all, members))
		}
		// A key made from the fixed template trades tokens: a member may
		// grant more than its share, only the cluster's total is bound.
		static := len(parts) > 1 || (p.Algorithm != "" && p.Algorithm != locker.AlgFixed)
		for i := range members {
			limit, b := netnsStaticShares(p, members, i)
			if mo := netnsCheckPart(p, per[i], limit, b, len(parts) == 1); static && mo.over() {
				t.Errorf("%s (%s): member %d went over its share %d (burst %d): %v", label, p, i, limit, b, mo)
			}
			// A window's worth at the start, then the share every window.
			capacity[i] = min(capacity[i], float64(limit)*(1+float64(load)/float64(p.Window)))
			canGrant[i] = canGrant[i] || j == 0
			if b == 0 {
				canGrant[i] = false
			}
		}
		seen = max(seen, 2*o.count*1000/p.Limit)
		t.Logf("%s (%s): tightest interval: %v", label, p, o)
	}
	var use float64
	for i := range members {
		if !canGrant[i] {
			if errs[i] == 0 {
				t.Errorf("%s: member %d, with no share of a burst, answered no error", name, i)
			}
			continue
		}
		if errs[i] > 0 {
			t.Errorf("%s: member %d answered %d errors", name, i, errs[i])
		}
		use += capacity[i]
	}
	use = float64(len(all)) / use
	t.Logf("%s: %d grants (members %s), %.0f%% of what the shares allow over %v; member %d granted %d after the fault; %d error answers, %d lost",
		name, len(all), grantSummary(all, members), 100*use, load.Round(time.Millisecond),
		netnsStaticVictim, victimAfter, errAnswers, lost)
	if parts[0].Algorithm != locker.AlgGCRA && seen < 1000 {
		// The grants' spans were too wide for the check to see much.
		t.Errorf("%s: no interval held half a limit by the check's count", name)
	}
	if use < netnsStaticMinUse {
		t.Errorf("%s: %.0f%% of what the shares allow granted, want at least %.0f%%: the run was nearly idle",
			name, 100*use, 100*netnsStaticMinUse)
	}
	if victimAfter == 0 {
		t.Errorf("%s: member %d granted nothing after the fault", name, netnsStaticVictim)
	}
}

// netnsCheckPart checks grants against one limit p of a key, at limit
// and burst: by its algorithm's definition, and for a fixed window also,
// if labels, by the window labels the answers name (the server's own
// account; an answer names the window of its key's tightest limit, so
// only a key of one limit has labels of p's windows).
func netnsCheckPart(p locker.Part, gs []grantSpan, limit, burst int64, labels bool) grantOver {
	switch p.Algorithm {
	case locker.AlgSliding:
		return grantCheckSliding(gs, limit, p.Window)
	case locker.AlgGCRA:
		return grantCheckGCRA(gs, limit, burst, p.Window)
	}
	o := grantCheckFixed(gs, limit, p.Window)
	if w, n := grantCheckLabels(gs); labels && n > o.count {
		o = grantOver{from: w * int64(p.Window), to: (w + 1) * int64(p.Window), count: n, bound: limit}
	}
	return o
}

// TestNetnsNarrow shows that narrowing the spans of the requests a frozen
// member got makes an over at its resumption visible, and that nothing
// else moves.
func TestNetnsNarrow(t *testing.T) {
	const ms = int64(time.Millisecond)
	stop, resume := time.Unix(0, 1000*ms), time.Unix(0, 3000*ms)
	var as []netnsAnswer
	// Member 0, frozen from 1000ms to 3000ms, got 12 requests meanwhile
	// and granted them all within 5ms of resuming: over a sliding 10/1s.
	for i := range int64(12) {
		as = append(as, netnsAnswer{result: 'g', lo: 1100*ms + i*ms, hi: 3001*ms + i*ms/2})
	}
	// Before the freeze, and from another member: not moved.
	as = append(as, netnsAnswer{result: 'g', lo: 900 * ms, hi: 3001 * ms},
		netnsAnswer{result: 'g', lo: 1100 * ms, hi: 3001 * ms, member: 1})
	spans := func() []grantSpan {
		var gs []grantSpan
		for _, a := range as {
			if a.member == 0 {
				gs = append(gs, grantSpan{lo: a.lo, hi: a.hi})
			}
		}
		return gs
	}
	if o := grantCheckSliding(spans(), 10, time.Second); o.over() {
		t.Fatalf("before narrowing: %v, want no interval seen over", o)
	}
	held, early := netnsNarrow(as, 0, netnsFaultEvents{quietFrom: stop, quietTo: resume})
	if held != 12 || early != 0 {
		t.Errorf("netnsNarrow: %d held, %d early, want 12 and 0", held, early)
	}
	if o := grantCheckSliding(spans(), 10, time.Second); !o.over() || o.count != 12 {
		t.Errorf("after narrowing: %v, want 12 grants over the limit 10", o)
	}
	if as[12].lo != 900*ms || as[13].lo != 1100*ms {
		t.Errorf("narrowed answers outside the freeze or of another member: %+v %+v", as[12], as[13])
	}
	// A reply received while the member was stopped is counted as early.
	as = []netnsAnswer{{result: 's', lo: 1500 * ms, hi: 1501 * ms}}
	if _, early := netnsNarrow(as, 0, netnsFaultEvents{quietFrom: stop, quietTo: resume}); early != 1 {
		t.Errorf("an answer while stopped: %d early, want 1", early)
	}
}

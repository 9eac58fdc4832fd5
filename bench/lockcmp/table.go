package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/lockerd/lockerd/bench/internal/runtab"
	"github.com/lockerd/lockerd/loadstats"
)

// row compares run A with run B (lockerd), as bench/report does.
type row struct {
	label, a, b, target string
	// na, if set, is why B has no figures.
	na string
}

// rows lists the comparisons of the systems measured.
func (b *bench) rows() []row {
	var rows []row
	lockerdDown, lockerdOn := b.down[sysLockerd], slices.Contains(b.o.systems, sysLockerd)
	for _, sc := range scenarios {
		for _, other := range []string{sysRedis, sysEtcd, sysZK} {
			if !slices.Contains(b.o.systems, other) {
				continue
			}
			r := row{label: sc.label + ": lockerd vs " + titles[other], a: other + " " + sc.id,
				b: sysLockerd + " " + sc.id, target: sc.targets[other]}
			if !lockerdOn {
				r.b = "-"
			} else if lockerdDown != "" {
				r.na = lockerdDown
			}
			rows = append(rows, r)
		}
	}
	if lockerdOn {
		c := fmt.Sprintf(" c=%d", b.o.takeC)
		side := fmt.Sprintf(", %d goroutines", b.o.sideC)
		rows = append(rows,
			row{label: "take" + c + ": beside lock cycles" + side + " vs alone",
				a: takeAlone, b: takeBesideLock, target: "- (the CPU is shared)", na: lockerdDown},
			row{label: "take" + c + ": beside lock cycles vs beside takes on another key" + side,
				a: takeBesideTake, b: takeBesideLock, target: ">= 0.90", na: lockerdDown})
	}
	return rows
}

// table writes the markdown table of rows over runs.
func table(w io.Writer, rows []row, runs map[string][]loadstats.Summary) {
	fmt.Fprintln(w, "| comparison | A | A per s | A p50 / p99 µs | B | B per s | B p50 / p99 µs | B/A per round (median [min..max]) | B/A of medians | target |")
	fmt.Fprintln(w, "|---|---|---:|---:|---|---:|---:|---:|---:|---|")
	for _, r := range rows {
		ra := runs[r.a]
		switch {
		case r.na != "" && len(ra) == 0:
			fmt.Fprintf(w, "| %s | %s | n/a | | %s | n/a | | | | %s |\n", r.label, r.a, r.b, r.target)
			continue
		case r.na != "":
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | n/a | | | | %s |\n", r.label, r.a, runtab.Rate(ra), runtab.Lat(ra), r.b, r.target)
			continue
		case r.b == "-":
			fmt.Fprintf(w, "| %s | %s | %s | %s | | | | | | %s |\n", r.label, r.a, runtab.Rate(ra), runtab.Lat(ra), r.target)
			continue
		}
		rb := runs[r.b]
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.label, r.a, runtab.Rate(ra), runtab.Lat(ra), r.b, runtab.Rate(rb), runtab.Lat(rb),
			runtab.RoundRatios(ra, rb), runtab.OfMedians(ra, rb), r.target)
	}
}

// handoverTable shows, for the runs on one lock, how many cycles per
// second handed the lock to another goroutine: a lock whose holder takes
// it again at once (as a Redis client that retries after a pause often
// does) completes cycles without handing it over.
func (b *bench) handoverTable(w io.Writer) {
	var cols []string
	for _, s := range b.o.systems {
		if _, down := b.down[s]; !down && s != sysEcho {
			cols = append(cols, s)
		}
	}
	for _, sc := range scenarios {
		if sc.own || len(cols) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s, medians over rounds: cycles, and hand-overs (the lock went to another goroutine than its last holder), per second:\n\n", sc.label)
		fmt.Fprint(w, "| per second |")
		for _, c := range cols {
			fmt.Fprintf(w, " %s |", titles[c])
		}
		fmt.Fprint(w, "\n|---|")
		for range cols {
			fmt.Fprint(w, "---:|")
		}
		fmt.Fprint(w, "\n| cycles |")
		for _, c := range cols {
			fmt.Fprintf(w, " %s |", runtab.Rate(b.results[c+" "+sc.id]))
		}
		fmt.Fprint(w, "\n| hand-overs |")
		for _, c := range cols {
			h := b.handovers[c+" "+sc.id]
			if len(h) == 0 {
				fmt.Fprint(w, " missing |")
				continue
			}
			fmt.Fprintf(w, " %.0f |", runtab.Median(h))
		}
		fmt.Fprintln(w)
	}
}

// floorTable sets the runs on one lock against the round trip of the
// echo server measured in the same run: each hand-over needs a release to
// reach the server and a grant to come back, so a lock is handed over at
// most about once per round trip. Each row is a rate per round divided by
// that round's echo round trips per second.
func (b *bench) floorTable(w io.Writer) {
	echo := b.results[echoRun]
	if len(echo) == 0 {
		return
	}
	fmt.Fprintf(w, "\nThe floor of a hand-over, measured in each round right before the runs on one lock: a bare ZeroMQ round\n"+
		"trip (bench/echo, one REQ client, one goroutine, %d-byte body) took p50 / p99 %s µs, %s round trips/s. On one lock each hand-over is a\n"+
		"release sent to the server and a grant sent back, one round trip at least: hand-overs/s are at most\n"+
		"about 1/RTT. Share of 1/RTT per round (median [min..max]):\n\n", len(echoBody), runtab.Lat(echo), runtab.Rate(echo))
	for _, sc := range scenarios {
		if sc.own {
			continue
		}
		fmt.Fprintf(w, "| %s | per s | share of 1/RTT (per round) |\n|---|---:|---:|\n", sc.label)
		fmt.Fprintf(w, "| echo round trips (1/RTT) | %s | 1.00 |\n", runtab.Rate(echo))
		if h := b.handovers[sysLockerd+" "+sc.id]; len(h) > 0 {
			fmt.Fprintf(w, "| lockerd hand-overs | %.0f | %s |\n", runtab.Median(h), perRound(h, 1, echo))
		}
		for _, other := range []string{sysRedis, sysEtcd, sysZK} {
			k, ok := floorTargets[other]
			r := b.results[other+" "+sc.id]
			if !ok || len(r) == 0 {
				continue
			}
			v := make([]float64, len(r))
			for i, s := range r {
				v[i] = s.DecisionsPerSecond
			}
			fmt.Fprintf(w, "| target: %g × %s cycles | %.0f | %s |\n", k, titles[other], k*runtab.Median(v), perRound(v, k, echo))
		}
	}
	// With one goroutine a cycle is two round trips, one after the other.
	c1 := scenarios[0]
	if !slices.ContainsFunc(b.o.systems, func(s string) bool { return s != sysEcho && len(b.results[s+" "+c1.id]) > 0 }) {
		return
	}
	p50 := runtab.Pick(echo, func(s loadstats.Summary) float64 { return s.P50us })
	p99 := runtab.Pick(echo, func(s loadstats.Summary) float64 { return s.P99us })
	fmt.Fprintf(w, "\n%s: a cycle is two round trips in a row, about 2 × the echo round trip (measured\n"+
		"just before the runs on one lock, not beside these), p50 / p99 %.0f / %.0f µs. Cycles, p50 / p99 µs (medians):\n\n"+
		"| system | p50 / p99 µs |\n|---|---:|\n", c1.label, 2*p50, 2*p99)
	for _, s := range b.o.systems {
		if r := b.results[s+" "+c1.id]; len(r) > 0 && s != sysEcho {
			fmt.Fprintf(w, "| %s | %s |\n", titles[s], runtab.Lat(r))
		}
	}
}

// floorTargets are the factors of the one-lock targets (issue: at least
// 3x Redis, 10x etcd and ZooKeeper).
var floorTargets = map[string]float64{sysRedis: 3, sysEtcd: 10, sysZK: 10}

// perRound is k*v[i] over the echo rate of round i, as "**median** [min..max]".
func perRound(v []float64, k float64, echo []loadstats.Summary) string {
	var r []float64
	for i := 0; i < len(v) && i < len(echo); i++ {
		if echo[i].DecisionsPerSecond > 0 {
			r = append(r, k*v[i]/echo[i].DecisionsPerSecond)
		}
	}
	return runtab.Spread(r)
}

// write prints the header and the table to stdout, and with -o also the
// raw runs to that file.
func (b *bench) write(stdout io.Writer, loadBefore, loadAfter string) error {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "Written by `bench/lockcmp -d %s -rounds %d` on %s at %s;\n",
		b.o.d, b.o.rounds, time.Now().UTC().Format("2006-01-02 15:04 MST"), commit())
	fmt.Fprintf(&buf, "%d CPUs, %s; %s. Load average (1, 5, 15 min) %s before, %s after.\n",
		runtime.NumCPU(), runtime.Version(), strings.Join(b.versions, ", "), loadBefore, loadAfter)
	fmt.Fprintf(&buf, "Clients and servers on one machine, over loopback. Each round runs every system in turn;\n")
	fmt.Fprintf(&buf, "figures are medians over %d rounds, B/A is lockerd's ratio per round. A cycle is acquire then\n", b.o.rounds)
	fmt.Fprintf(&buf, "release of an exclusive lock with a %s lease; each system's client is shared by the goroutines.\n", b.o.ttl)
	fmt.Fprintf(&buf, "Redis retries a taken lock after %s ±50%%. Redis and lockerd keep locks in memory; etcd and\n", b.o.redisBackoff)
	fmt.Fprintf(&buf, "ZooKeeper write them with fsync to %s.\n", storage(b.o.dataDir))
	fmt.Fprintf(&buf, "take rows: %d goroutines taking from a key whose limit is never reached, alone or beside\n", b.o.takeC)
	fmt.Fprintf(&buf, "%d goroutines of lock cycles or of takes on another key, all on one lockerd.\n", b.o.sideC)
	fmt.Fprintln(&buf)
	table(&buf, b.rows(), b.results)
	if why, ok := b.down[sysLockerd]; ok && slices.Contains(b.o.systems, sysLockerd) {
		fmt.Fprintf(&buf, "\n**lockerd: no figures** (n/a above): %s.\n", why)
	}
	b.handoverTable(&buf)
	b.floorTable(&buf)
	if _, err := stdout.Write(buf.Bytes()); err != nil {
		return err
	}
	if b.o.out == "" {
		return nil
	}
	fmt.Fprintf(&buf, "\nRaw runs (JSON lines):\n\n```\n")
	for _, s := range b.raw {
		if err := s.WriteJSON(&buf); err != nil {
			return err
		}
	}
	fmt.Fprintf(&buf, "```\n")
	return os.WriteFile(b.o.out, buf.Bytes(), 0o644)
}

// storage says where dir is.
func storage(dir string) string {
	if onTmpfs(dir) {
		return dir + " (a tmpfs, in memory)"
	}
	return dir + " (not a tmpfs)"
}

// loadAvg is the machine's load average, "?" where there is none.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// commit is the short commit of the enclosing repository.
func commit() string {
	root, err := repoRoot()
	if err != nil {
		return "unknown"
	}
	cmd := exec.Command("git", "rev-parse", "--short", "HEAD")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

var versionRE = regexp.MustCompile(`v?=?(\d+\.\d+\.\d+)`)

// versions names each server's version.
func versions(systems []string, lockerdBin string) []string {
	first := func(name string, args ...string) string {
		out, _ := exec.Command(name, args...).Output()
		if m := versionRE.FindSubmatch(out); m != nil {
			return string(m[1])
		}
		return "?"
	}
	var v []string
	for _, s := range systems {
		switch s {
		case sysRedis:
			v = append(v, "redis "+first("redis-server", "--version"))
		case sysEtcd:
			v = append(v, "etcd "+first("etcd", "--version"))
		case sysZK:
			zv := "?"
			if jars, _ := filepath.Glob("/usr/share/java/zookeeper-[0-9]*.jar"); len(jars) > 0 {
				if m := versionRE.FindStringSubmatch(filepath.Base(jars[0])); m != nil {
					zv = m[1]
				}
			}
			v = append(v, "ZooKeeper "+zv)
		case sysLockerd:
			out, _ := exec.Command(lockerdBin, "--version").Output()
			v = append(v, "lockerd "+strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "lockerd")))
		}
	}
	return v
}

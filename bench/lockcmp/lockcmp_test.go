package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/lockerd/lockerd/loadstats"
	"github.com/lockerd/lockerd/locker"
)

func TestReplyInError(t *testing.T) {
	for _, body := range []string{"locked 5 10000", "busy 120 1 3 lockcmp:42", `released 9`} {
		// The form Client.Do gives a reply it cannot read as a take reply.
		err := fmt.Errorf("%w: %.64q", locker.ErrBadReply, body)
		got, gerr := replyInError(err)
		if gerr != nil || got != body {
			t.Errorf("replyInError(%q) = %q, %v; want %q", err, got, gerr, body)
		}
	}
	if _, err := replyInError(locker.ErrBadReply); err == nil {
		t.Error("replyInError of an error without a body: no error")
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args    []string
		systems []string
		bad     bool
	}{
		{args: nil, systems: allSystems},
		{args: []string{"-systems", "lockerd,redis,redis"}, systems: []string{sysRedis, sysLockerd}},
		{args: []string{"-systems", "mongo"}, bad: true},
		{args: []string{"-systems", ","}, bad: true},
		{args: []string{"-rounds", "0"}, bad: true},
		{args: []string{"-ttl", "500ms"}, bad: true},
		{args: []string{"extra"}, bad: true},
	}
	for _, tt := range tests {
		o, err := parseFlags(tt.args, io.Discard)
		if (err != nil) != tt.bad {
			t.Errorf("parseFlags(%q): error %v, want error %v", tt.args, err, tt.bad)
			continue
		}
		if !tt.bad && !slices.Equal(o.systems, tt.systems) {
			t.Errorf("parseFlags(%q): systems %q, want %q", tt.args, o.systems, tt.systems)
		}
		if !tt.bad && o.timeout <= 0 {
			t.Errorf("parseFlags(%q): no bound on the run", tt.args)
		}
	}
}

func runs(name string, rates ...float64) []loadstats.Summary {
	var s []loadstats.Summary
	for _, r := range rates {
		s = append(s, loadstats.Summary{Name: name, DecisionsPerSecond: r, P50us: 100, P99us: 900})
	}
	return s
}

func TestTable(t *testing.T) {
	res := map[string][]loadstats.Summary{
		"redis own c=64":   runs("redis own c=64", 100, 200, 300),
		"lockerd own c=64": runs("lockerd own c=64", 300, 400, 1200),
	}
	tests := []struct {
		name string
		down string
		want []string
		not  []string
	}{
		{name: "served", want: []string{"| redis own c=64 | 200 | 100 / 900 | lockerd own c=64 | 400 | 100 / 900 | **3.00** [2.00..4.00] | 2.00 |"}},
		{name: "not served", down: "it answered go",
			want: []string{"| redis own c=64 | 200 | 100 / 900 | lockerd own c=64 | n/a |", "**lockerd: no figures** (n/a above): it answered go."},
			not:  []string{"400", "3.00"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags([]string{"-systems", "redis,lockerd"}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			b := &bench{o: o, results: res, down: map[string]string{}}
			if tt.down != "" {
				b.down[sysLockerd] = tt.down
			}
			var out bytes.Buffer
			if err := b.write(&out, "1 2 3", "4 5 6"); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			for _, n := range tt.not {
				if strings.Contains(out.String(), n) {
					t.Errorf("output has %q:\n%s", n, out.String())
				}
			}
		})
	}
}

func TestExclusive(t *testing.T) {
	errAcq, errRel := errors.New("acquire failed"), errors.New("release failed")
	tests := []struct {
		name     string
		held     int32 // goroutines already between acquire and release
		acqErr   error
		relErr   error
		want     error
		released bool
	}{
		{name: "alone", released: true},
		{name: "another holder", held: 1, want: errOverlap, released: true},
		{name: "acquire fails", acqErr: errAcq, want: errAcq},
		{name: "release fails", relErr: errRel, want: errRel, released: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newLockState()
			st.inside.Store(tt.held)
			released := false
			acq := func(context.Context) (func(context.Context) error, error) {
				if tt.acqErr != nil {
					return nil, tt.acqErr
				}
				return func(context.Context) error { released = true; return tt.relErr }, nil
			}
			err := exclusive(acq, st, 1)(context.Background())
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
			if released != tt.released {
				t.Errorf("released %v, want %v", released, tt.released)
			}
			if st.inside.Load() != tt.held {
				t.Errorf("inside %d after the cycle, want %d", st.inside.Load(), tt.held)
			}
		})
	}
}

func TestHandovers(t *testing.T) {
	st := newLockState()
	acq := func(context.Context) (func(context.Context) error, error) {
		return func(context.Context) error { return nil }, nil
	}
	// The first acquisition, then 1 keeps it, then it goes to 2 and back.
	for _, me := range []int32{1, 1, 2, 1} {
		if err := exclusive(acq, st, me)(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := st.handovers.Load(); got != 3 {
		t.Errorf("%d hand-overs, want 3", got)
	}
}

func TestFloorTable(t *testing.T) {
	o, err := parseFlags([]string{"-systems", "redis,zookeeper,lockerd,echo"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b := &bench{o: o, down: map[string]string{}, results: map[string][]loadstats.Summary{
		echoRun:                   runs(echoRun, 10000, 8000, 12000),
		"redis c=1":               runs("redis c=1", 20000, 20000, 20000),
		"redis one lock c=16":     runs("redis one lock c=16", 5000, 4000, 6000),
		"zookeeper one lock c=16": runs("zookeeper one lock c=16", 1000, 1000, 1000),
		"lockerd one lock c=16":   runs("lockerd one lock c=16", 5000, 4000, 6000),
	}, handovers: map[string][]float64{"lockerd one lock c=16": {5000, 4000, 6000}}}
	var out bytes.Buffer
	if err := b.write(&out, "1 2 3", "4 5 6"); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"| echo round trips (1/RTT) | 10000 | 1.00 |",
		"| lockerd hand-overs | 5000 | **0.50** [0.50..0.50] |",
		"| target: 3 × Redis cycles | 15000 | **1.50** [1.50..1.50] |",
		"| target: 10 × ZooKeeper cycles | 10000 | **1.00** [0.83..1.25] |",
		"p50 / p99 200 / 1800 µs",
		"| Redis | 100 / 900 |",
	} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
	if strings.Contains(out.String(), "| echo |") {
		t.Errorf("echo is a column of the hand-over table:\n%s", out.String())
	}
}

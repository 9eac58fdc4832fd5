package metrics_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/metrics"
	dto "github.com/prometheus/client_model/go"
)

// deployDir holds the shipped Prometheus and Grafana files.
const deployDir = "../deploy/prometheus"

// TestDeployPromtool checks the shipped scrape config and rules with
// promtool, and runs the rules' unit tests.
func TestDeployPromtool(t *testing.T) {
	tool := promtool(t)
	tests := []struct {
		name string
		args []string
	}{
		{"check config", []string{"check", "config", "prometheus.yml"}},
		{"check rules", []string{"check", "rules", "lockerd.rules.yml"}},
		{"test rules", []string{"test", "rules", "lockerd.rules.test.yml"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, tool, tc.args...)
			cmd.Dir = deployDir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("promtool %s: %v\n%s", strings.Join(tc.args, " "), err, out)
			}
		})
	}
}

// exportedNames returns every series name a fully wired lockerd exports:
// lockerd's own (with histogram suffixes), Go runtime and process.
func exportedNames(tb testing.TB) map[string]bool {
	tb.Helper()
	reg := metrics.NewRegistry()
	m, err := metrics.New(reg, testBuild)
	if err != nil {
		tb.Fatal(err)
	}
	var src fakeStats
	src.set(keyStat("api", 1, time.Second, 0, 0))
	m.SetStats(&src)
	m.SetPeers(fakePeers{{Name: "b"}})
	m.ObserveRequest("api", locker.OutcomeGo, time.Microsecond)
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		n := mf.GetName()
		names[n] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			names[n+"_bucket"], names[n+"_sum"], names[n+"_count"] = true, true, true
		}
	}
	return names
}

var metricNameRE = regexp.MustCompile(`\b(?:lockerd|process|go)_[a-z0-9_]+`)

// TestDeployMetricNames checks that the alert rules and the dashboard
// only query metrics that lockerd exports, so a renamed metric cannot
// leave them silently empty.
func TestDeployMetricNames(t *testing.T) {
	known := exportedNames(t)
	rules, err := os.ReadFile(filepath.Join(deployDir, "lockerd.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	exprs := map[string][]string{"lockerd.rules.yml": {string(rules)}}

	b, err := os.ReadFile(filepath.Join(deployDir, "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	if dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard has uid %q and %d panels, want a uid and panels", dash.UID, len(dash.Panels))
	}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("dashboard: panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("dashboard: panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				t.Errorf("dashboard: panel %q has an empty query", p.Title)
			}
			exprs["dashboard "+p.Title] = append(exprs["dashboard "+p.Title], tg.Expr)
		}
	}

	used := map[string]bool{}
	for where, es := range exprs {
		for _, e := range es {
			for _, name := range metricNameRE.FindAllString(e, -1) {
				used[name] = true
				if !known[name] {
					t.Errorf("%s: queries %s, which lockerd does not export", where, name)
				}
			}
		}
	}
	// Every lockerd metric should be on the dashboard or in an alert.
	for name := range known {
		if strings.HasPrefix(name, "lockerd_") && !used[name] &&
			!strings.HasSuffix(name, "_bucket") && !strings.HasSuffix(name, "_sum") && !strings.HasSuffix(name, "_count") &&
			name != "lockerd_request_duration_seconds" {
			t.Errorf("%s is neither on the dashboard nor in an alert", name)
		}
	}
}

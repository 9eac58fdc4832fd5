package locker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/lockerd/lockerd/locker"
)

func TestParseKeySpec(t *testing.T) {
	tests := []struct {
		spec    string
		want    locker.KeyConfig
		wantErr string
	}{
		{spec: "api=5/800ms", want: locker.KeyConfig{Name: "api", Limit: 5, Window: 800 * time.Millisecond}},
		{spec: "github=5000/1h", want: locker.KeyConfig{Name: "github", Limit: 5000, Window: time.Hour}},
		{spec: "a.b:c/d-e_f=1/1ms", want: locker.KeyConfig{Name: "a.b:c/d-e_f", Limit: 1, Window: time.Millisecond}},
		{spec: "big=1000000000/24h", want: locker.KeyConfig{Name: "big", Limit: 1e9, Window: 24 * time.Hour}},
		{spec: "api", wantErr: "want NAME=LIMIT/WINDOW"},
		{spec: "api=5", wantErr: "missing /WINDOW"},
		{spec: "=5/1s", wantErr: "empty key name"},
		{spec: "a b=5/1s", wantErr: "not allowed"},
		{spec: strings.Repeat("k", 129) + "=5/1s", wantErr: "longer than 128"},
		{spec: "api=0/1s", wantErr: "limit \"0\""},
		{spec: "api=-1/1s", wantErr: "limit \"-1\""},
		{spec: "api=x/1s", wantErr: "limit \"x\""},
		{spec: "api=1000000001/1s", wantErr: "limit"},
		{spec: "api=5/0s", wantErr: "window 0s out of range"},
		{spec: "api=5/-1s", wantErr: "window -1s out of range"},
		{spec: "api=5/25h", wantErr: "out of range"},
		{spec: "api=5/1500us", wantErr: "whole number of milliseconds"},
		{spec: "api=5/soon", wantErr: "not a duration"},
		{spec: "api=5/", wantErr: "not a duration"},
		{spec: "api=5/1s/fixed", want: locker.KeyConfig{Name: "api", Limit: 5, Window: time.Second}},
		{spec: "api=5/1s/sliding", want: locker.KeyConfig{Name: "api", Limit: 5, Window: time.Second, Algorithm: locker.AlgSliding}},
		{spec: "api=10/1s/gcra", want: locker.KeyConfig{Name: "api", Limit: 10, Window: time.Second, Algorithm: locker.AlgGCRA}},
		{spec: "api=10/1s/gcra:1", want: locker.KeyConfig{Name: "api", Limit: 10, Window: time.Second, Algorithm: locker.AlgGCRA, Burst: 1}},
		{spec: "api=10/1s/gcra:10", want: locker.KeyConfig{Name: "api", Limit: 10, Window: time.Second, Algorithm: locker.AlgGCRA, Burst: 10}},
		{spec: "s=100000/1s/sliding", want: locker.KeyConfig{Name: "s", Limit: 100000, Window: time.Second, Algorithm: locker.AlgSliding}},
		{spec: "github=10/1s+5000/1h", want: locker.KeyConfig{Name: "github", Limit: 10, Window: time.Second,
			More: [3]locker.Part{{Limit: 5000, Window: time.Hour}}}},
		{spec: "t=10/1s/gcra:2+100/1m/sliding+1000/1h+9999/24h/fixed", want: locker.KeyConfig{Name: "t", Limit: 10, Window: time.Second,
			Algorithm: locker.AlgGCRA, Burst: 2, More: [3]locker.Part{
				{Limit: 100, Window: time.Minute, Algorithm: locker.AlgSliding}, {Limit: 1000, Window: time.Hour}, {Limit: 9999, Window: 24 * time.Hour}}}},
		{spec: "api=5/1s/leaky", wantErr: `algorithm "leaky": want fixed, sliding or gcra`},
		{spec: "api=5/1s/", wantErr: `algorithm ""`},
		{spec: "api=5/1s/sliding:2", wantErr: "only gcra takes a burst"},
		{spec: "api=5/1s/fixed:2", wantErr: "only gcra takes a burst"},
		{spec: "api=5/1s/gcra:0", wantErr: "burst \"0\" is not an integer from 1 to 5"},
		{spec: "api=5/1s/gcra:6", wantErr: "burst \"6\""},
		{spec: "api=5/1s/gcra:", wantErr: "burst \"\""},
		{spec: "api=5/1s/gcra:x", wantErr: "burst \"x\""},
		{spec: "s=100001/1s/sliding", wantErr: "sliding limit 100001 above 100000"},
		{spec: "api=5/1s+", wantErr: "missing /WINDOW"},
		{spec: "api=+5/1s", wantErr: "missing /WINDOW"},
		{spec: "api=5/1s++1/1h", wantErr: "missing /WINDOW"},
		{spec: "api=5/1s+0/1h", wantErr: "limit \"0\""},
		{spec: "api=5/1s+5/25h", wantErr: "out of range"},
		{spec: "api=1/1s+1/1s+1/1s+1/1s+1/1s", wantErr: "more than 4 limits"},
		{spec: "tenant:*=100/1m", want: locker.KeyConfig{Name: "tenant:*", Limit: 100, Window: time.Minute}},
		{spec: "*=1/1s/gcra:1", want: locker.KeyConfig{Name: "*", Limit: 1, Window: time.Second, Algorithm: locker.AlgGCRA, Burst: 1}},
		{spec: "u.*=10/1s+100/1h/sliding", want: locker.KeyConfig{Name: "u.*", Limit: 10, Window: time.Second,
			More: [3]locker.Part{{Limit: 100, Window: time.Hour, Algorithm: locker.AlgSliding}}}},
		{spec: "a*b=1/1s", wantErr: `character '*' not allowed`},
		{spec: "a**=1/1s", wantErr: `character '*' not allowed before the final *`},
		{spec: "a b*=1/1s", wantErr: `character ' ' not allowed before the final *`},
		{spec: strings.Repeat("k", 128) + "*=1/1s", wantErr: "key template longer than 128"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := locker.ParseKeySpec(tc.spec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseKeySpec(%q) err=%v, want it to mention %q", tc.spec, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseKeySpec(%q)=%+v, %v, want %+v", tc.spec, got, err, tc.want)
			}
			if back, err := locker.ParseKeySpec(got.String()); err != nil || back != got {
				t.Fatalf("round trip of %q: %+v, %v", got.String(), back, err)
			}
		})
	}
}

func FuzzParseKeySpec(f *testing.F) {
	for _, s := range []string{"api=5/800ms", "github=5000/1h", "x=1/1ms", "a=0/1s", "a=5", "=", "a=1/1h30m",
		"a=5/1s/sliding", "a=10/1s/gcra:1", "a=10/1s+5000/1h/gcra", "a=1/1s/fixed+2/2s/sliding+3/3s/gcra:3+4/4s", "a=1/1s+", "a=5/1s/gcra:", "t:*=100/1m", "*=1/1s", "a*b=1/1s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		k, err := locker.ParseKeySpec(spec)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "locker: ") {
				t.Fatalf("error without package prefix: %v", err)
			}
			return
		}
		if err := k.Validate(); err != nil {
			t.Fatalf("ParseKeySpec(%q) accepted an invalid key: %v", spec, err)
		}
		if _, err := locker.NewCounter([]locker.KeyConfig{k}); err != nil {
			t.Fatalf("NewCounter refused %q: %v", spec, err)
		}
		back, err := locker.ParseKeySpec(k.String())
		if err != nil || back != k {
			t.Fatalf("round trip of %q via %q: %+v, %v", spec, k.String(), back, err)
		}
	})
}

// TestKeyErrorText pins the whole text of key errors as users see them:
// one package prefix, and the nested reason after the spec.
func TestKeyErrorText(t *testing.T) {
	tests := []struct {
		name string
		err  func() error
		want string
	}{
		{"ParseKeySpec bad name", func() error { _, err := locker.ParseKeySpec("a b=5/1s"); return err },
			`locker: key spec "a b=5/1s": key name "a b": character ' ' not allowed (use A-Za-z0-9_.:/-)`},
		{"ParseKeySpec empty name", func() error { _, err := locker.ParseKeySpec("=5/1s"); return err },
			`locker: key spec "=5/1s": empty key name`},
		{"ParseKeySpec window", func() error { _, err := locker.ParseKeySpec("api=5/25h"); return err },
			`locker: key spec "api=5/25h": key "api": window 25h0m0s out of range 1ms..24h0m0s`},
		{"ValidKeyName", func() error { return locker.ValidKeyName("") }, `locker: empty key name`},
		{"Validate limit", func() error { return locker.KeyConfig{Name: "api", Window: time.Second}.Validate() },
			`locker: key "api": limit 0 out of range 1..1000000000`},
		{"Validate name", func() error { return locker.KeyConfig{Name: "a b", Limit: 1, Window: time.Second}.Validate() },
			`locker: key name "a b": character ' ' not allowed (use A-Za-z0-9_.:/-)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.err(); err == nil || err.Error() != tc.want {
				t.Fatalf("error %v, want %s", err, tc.want)
			}
		})
	}
}

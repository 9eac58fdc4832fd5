package main

import (
	"strings"
	"testing"
)

func TestParseConfigLine(t *testing.T) {
	tests := []struct {
		line        string
		name, value string
		ok          bool
		err         bool
	}{
		{line: "", ok: false},
		{line: "   # a comment", ok: false},
		{line: "key = api=5/800ms", name: "key", value: "api=5/800ms", ok: true},
		{line: "  bind=tcp://*:7777  ", name: "bind", value: "tcp://*:7777", ok: true},
		{line: "--limit = 5", name: "limit", value: "5", ok: true},
		{line: `id = "two words"`, name: "id", value: "two words", ok: true},
		{line: `id = ""`, name: "id", value: "", ok: true},
		{line: "log-level =", name: "log-level", value: "", ok: true},
		{line: "just words", err: true},
		{line: "= value", err: true},
		{line: `id = "unterminated\"`, err: true},
	}
	for _, tc := range tests {
		t.Run(tc.line, func(t *testing.T) {
			e, ok, err := parseConfigLine(tc.line)
			if tc.err {
				if err == nil {
					t.Fatalf("parseConfigLine(%q)=%+v, want an error", tc.line, e)
				}
				return
			}
			if err != nil || ok != tc.ok || e.name != tc.name || e.value != tc.value {
				t.Fatalf("parseConfigLine(%q)=%+v, %v, %v; want %q=%q %v", tc.line, e, ok, err, tc.name, tc.value, tc.ok)
			}
		})
	}
}

func FuzzParseConfigLine(f *testing.F) {
	for _, s := range []string{"key = api=5/800ms", "# c", "", `id = "x y"`, "a", "=", `x = "\q"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		e, ok, err := parseConfigLine(line)
		if err != nil || !ok {
			return
		}
		if e.name == "" || strings.ContainsAny(e.name, "=") || e.name != strings.TrimSpace(e.name) {
			t.Fatalf("parseConfigLine(%q) gave name %q", line, e.name)
		}
	})
}

package main

import (
	"reflect"
	"testing"
)

// TestPickSteps checks that -steps runs the named measurements in their
// fixed order and refuses a name it does not know.
func TestPickSteps(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string // step names, in the order run; nil for an error
	}{
		{"idle,waits,keys,ondemand,fed", []string{"idle", "waits", "keys", "ondemand", "fed"}},
		{"ondemand", []string{"ondemand"}},
		{"fed, idle", []string{"idle", "fed"}},
		{"idle,waits,keys,fed", []string{"idle", "waits", "keys", "fed"}},
		{"", nil},
		{"ondemand,", nil},
		{"memory", nil},
	} {
		got, err := pickSteps(tc.in)
		if tc.want == nil {
			if err == nil {
				t.Errorf("pickSteps(%q): %d steps, want an error", tc.in, len(got))
			}
			continue
		}
		if err != nil {
			t.Errorf("pickSteps(%q): %v", tc.in, err)
			continue
		}
		var names []string
		for _, f := range got {
			for _, st := range allSteps {
				if reflect.ValueOf(st.run).Pointer() == reflect.ValueOf(f).Pointer() {
					names = append(names, st.name)
				}
			}
		}
		if !reflect.DeepEqual(names, tc.want) {
			t.Errorf("pickSteps(%q) = %v, want %v", tc.in, names, tc.want)
		}
	}
}

// TestNames checks the list of algorithms -live-algs accepts.
func TestNames(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"fixed,sliding,gcra", []string{"fixed", "sliding", "gcra"}},
		{"gcra", []string{"gcra"}},
		{"fixed,leaky", nil},
		{"", nil},
	} {
		got, err := names(tc.in, "fixed", "sliding", "gcra")
		if (err != nil) != (tc.want == nil) || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("names(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

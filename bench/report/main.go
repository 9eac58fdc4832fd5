// Command report reads the JSON summaries of bench/run.sh (one object per
// line, each with a name) from stdin and writes a markdown table that
// compares pairs of configurations measured in alternating rounds.
//
//	report -title "..." 'LABEL|NAME_A|NAME_B|TARGET' ... < results.jsonl
//
// Each row shows the median over rounds of A and B, the ratio of B to A
// computed per round (A then B, so slow drift cancels) as its median and
// range, the ratio of the two medians (less swayed by one disturbed
// run), and the ratio of B's p50 latency to A's, per round (median). A pair whose B is "-" prints A alone; a TARGET starting with
// "n/a" prints a row with no figures.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lockerd/lockerd/bench/internal/runtab"
	"github.com/lockerd/lockerd/loadstats"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	title := fs.String("title", "", "line printed above the table")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	runs, err := readRuns(stdin)
	if err != nil {
		fmt.Fprintf(stderr, "report: %v\n", err)
		return 1
	}
	if *title != "" {
		fmt.Fprintf(stdout, "%s\n\n", *title)
	}
	fmt.Fprintln(stdout, "| comparison | A | A decisions/s | A p50 / p99 µs | B | B decisions/s | B p50 / p99 µs | B/A per round (median [min..max]) | B/A of medians | B/A p50 latency | target |")
	fmt.Fprintln(stdout, "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|")
	for _, spec := range fs.Args() {
		f := strings.Split(spec, "|")
		if len(f) != 4 {
			fmt.Fprintf(stderr, "report: bad pair %q\n", spec)
			return 2
		}
		fmt.Fprintln(stdout, row(runs, f[0], f[1], f[2], f[3]))
	}
	return 0
}

// readRuns reads one JSON summary a line (blank lines skipped) and groups
// them by name, in the order read.
func readRuns(r io.Reader) (map[string][]loadstats.Summary, error) {
	runs := map[string][]loadstats.Summary{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var s loadstats.Summary
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			return nil, fmt.Errorf("bad line %q: %v", line, err)
		}
		runs[s.Name] = append(runs[s.Name], s)
	}
	return runs, nil
}

// row is the table row of one pair: no figures when target starts with
// "n/a", A alone when b is "-".
func row(runs map[string][]loadstats.Summary, label, a, b, target string) string {
	if strings.HasPrefix(target, "n/a") {
		return fmt.Sprintf("| %s | %s | | | %s | | | | | | %s |", label, a, b, target)
	}
	ra := runs[a]
	if b == "-" {
		return fmt.Sprintf("| %s | %s | %s | %s | | | | | | | %s |", label, a, runtab.Rate(ra), runtab.Lat(ra), target)
	}
	rb := runs[b]
	return fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |",
		label, a, runtab.Rate(ra), runtab.Lat(ra), b, runtab.Rate(rb), runtab.Lat(rb), runtab.RoundRatios(ra, rb),
		runtab.OfMedians(ra, rb), p50Ratio(ra, rb), target)
}

// p50Ratio is the median of B/A p50 latency, round by round, or "".
func p50Ratio(ra, rb []loadstats.Summary) string {
	var p50s []float64
	for i := 0; i < len(ra) && i < len(rb); i++ {
		if ra[i].P50us > 0 {
			p50s = append(p50s, rb[i].P50us/ra[i].P50us)
		}
	}
	if len(p50s) == 0 {
		return ""
	}
	return fmt.Sprintf("%.2f", runtab.Median(p50s))
}

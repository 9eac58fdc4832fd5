// Command plot draws the goroutine sweep of bench/run.sh: decisions/s and
// p99 latency against the number of goroutines, one line per system. It
// reads the JSON summaries the load programs print (one per line, each
// with name, goroutines, decisions_per_second and p99_us) from stdin and
// writes an SVG (or PNG, by the output's extension).
//
//	plot -o bench/scaling.svg -title "..." < sweep.jsonl
//
// It is a module of its own so that lockerd's module does not depend on
// the plotting library.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stderr))
}

// point is the part of a load summary the chart needs.
type point struct {
	Name       string  `json:"name"`
	Goroutines int     `json:"goroutines"`
	Rate       float64 `json:"decisions_per_second"`
	P99us      float64 `json:"p99_us"`
}

func run(args []string, stdin io.Reader, stderr io.Writer) int {
	fs := flag.NewFlagSet("plot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "scaling.svg", "output file: .svg or .png")
	title := fs.String("title", "", "subtitle: how it was measured")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	series, order, err := read(stdin)
	if err != nil {
		fmt.Fprintln(stderr, "plot:", err)
		return 1
	}
	if err := draw2(*out, *title, series, order); err != nil {
		fmt.Fprintln(stderr, "plot:", err)
		return 1
	}
	return 0
}

// read groups the summaries by name, in the order names first appear,
// each sorted by goroutines.
func read(r io.Reader) (map[string][]point, []string, error) {
	series := map[string][]point{}
	var order []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var p point
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			return nil, nil, fmt.Errorf("bad line %q: %w", line, err)
		}
		if p.Name == "" || p.Goroutines < 1 {
			return nil, nil, fmt.Errorf("line %q: no name or goroutines", line)
		}
		if _, ok := series[p.Name]; !ok {
			order = append(order, p.Name)
		}
		series[p.Name] = append(series[p.Name], p)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	if len(order) == 0 {
		return nil, nil, errors.New("no summaries on stdin")
	}
	for _, ps := range series {
		sort.Slice(ps, func(i, j int) bool { return ps[i].Goroutines < ps[j].Goroutines })
	}
	return series, order, nil
}

var colors = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
}

// panel is one plot of the chart: y of each series against goroutines.
func panel(title, ylabel string, logY bool, series map[string][]point, order []string, y func(point) float64) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "goroutines (log scale)"
	p.Y.Label.Text = ylabel
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = powersOfTwo{}
	if logY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = oneTwoFive{}
	} else {
		p.Y.Min = 0
	}
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.Left = true
	for i, name := range order {
		xys := make(plotter.XYs, 0, len(series[name]))
		for _, pt := range series[name] {
			if v := y(pt); !logY || v > 0 {
				xys = append(xys, plotter.XY{X: float64(pt.Goroutines), Y: v})
			}
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, err
		}
		c := colors[i%len(colors)]
		line.Color, points.Color = c, c
		line.Width = vg.Points(1.5)
		points.Shape = draw.CircleGlyph{}
		p.Add(line, points)
		p.Legend.Add(name, line, points)
	}
	// Head room above the data for the legend.
	if logY {
		p.Y.Max *= 4
	} else {
		p.Y.Max *= 1.3
	}
	return p, nil
}

// powersOfTwo ticks a log axis at 1, 2, 4, ... as the sweep's points.
type powersOfTwo struct{}

func (powersOfTwo) Ticks(min, max float64) []plot.Tick {
	var ts []plot.Tick
	for v := 1.0; v <= max*1.0001; v *= 2 {
		if v >= min*0.9999 {
			ts = append(ts, plot.Tick{Value: v, Label: fmt.Sprintf("%.0f", v)})
		}
	}
	return ts
}

// oneTwoFive ticks a log axis at 1, 2, 5, 10, 20, 50, ...: labels that
// show even when the data span less than a power of ten.
type oneTwoFive struct{}

func (oneTwoFive) Ticks(min, max float64) []plot.Tick {
	var ts []plot.Tick
	for dec := math.Pow(10, math.Floor(math.Log10(min))); dec <= max; dec *= 10 {
		for _, m := range []float64{1, 2, 5} {
			if v := m * dec; v >= min*0.9999 && v <= max*1.0001 {
				ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
			}
		}
	}
	return ts
}

// draw2 writes both panels side by side to out.
func draw2(out, subtitle string, series map[string][]point, order []string) error {
	rate, err := panel("decisions/s", "decisions per second", false, series, order, func(p point) float64 { return p.Rate })
	if err != nil {
		return err
	}
	p99, err := panel("p99 latency", "µs (log scale)", true, series, order, func(p point) float64 { return p.P99us })
	if err != nil {
		return err
	}
	if subtitle != "" {
		rate.Title.Text += " (" + subtitle + ")"
	}
	w, h := 11*vg.Inch, 4.5*vg.Inch
	var c draw.Canvas
	var save func(io.Writer) error
	switch strings.ToLower(filepath.Ext(out)) {
	case ".svg":
		s := vgsvg.New(w, h)
		c, save = draw.New(s), func(w io.Writer) error { _, err := s.WriteTo(w); return err }
	case ".png":
		img := vgimg.New(w, h)
		c = draw.New(img)
		save = func(w io.Writer) error { _, err := vgimg.PngCanvas{Canvas: img}.WriteTo(w); return err }
	default:
		return fmt.Errorf("%s: want .svg or .png", out)
	}
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	for i, p := range []*plot.Plot{rate, p99} {
		p.Draw(tiles.At(c, i, 0))
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := save(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

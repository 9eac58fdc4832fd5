// Command codestats reports the shape of the non-test Go code: the longest
// functions, the files over a line limit, and the exported identifiers of
// each package. The structure issue's targets are read off its output;
// gocyclo gives the complexity beside it (scripts/codestats.sh runs both).
//
//	go run ./scripts/codestats [-top N] [-max-lines N] [dir]
package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

type fn struct {
	pos   string
	name  string
	lines int
}

func main() {
	top := flag.Int("top", 10, "how many of the longest functions to list")
	maxLines := flag.Int("max-lines", 500, "list files longer than this")
	flag.Parse()
	root := "."
	if flag.NArg() > 0 {
		root = flag.Arg(0)
	}
	if err := report(root, *top, *maxLines); err != nil {
		fmt.Fprintln(os.Stderr, "codestats:", err)
		os.Exit(1)
	}
}

// stats is what the walk collects.
type stats struct {
	fset     *token.FileSet
	fns      []fn
	long     []string
	exported map[string]int
	maxLines int
}

func report(root string, top, maxLines int) error {
	st := &stats{fset: token.NewFileSet(), exported: map[string]int{}, maxLines: maxLines}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == ".git" || d.Name() == "vendor") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		return st.file(path)
	})
	if err != nil {
		return err
	}
	st.print(top)
	return nil
}

// file adds one source file to the figures.
func (st *stats) file(path string) error {
	f, err := parser.ParseFile(st.fset, path, nil, 0)
	if err != nil {
		return err
	}
	if n := st.fset.File(f.Pos()).LineCount(); n > st.maxLines {
		st.long = append(st.long, fmt.Sprintf("%5d %s", n, path))
	}
	pkg := filepath.Dir(path)
	for _, decl := range f.Decls {
		if d, ok := decl.(*ast.FuncDecl); ok {
			st.funcDecl(path, d)
			if d.Name.IsExported() && f.Name.Name != "main" &&
				(d.Recv == nil || len(d.Recv.List) == 0 || ast.IsExported(recvName(d.Recv.List[0].Type))) {
				st.exported[pkg]++ // a method counts when its type is exported too
			}
			continue
		}
		st.exported[pkg] += exportedSpecs(decl.(*ast.GenDecl))
	}
	return nil
}

func (st *stats) funcDecl(path string, d *ast.FuncDecl) {
	start, end := st.fset.Position(d.Pos()), st.fset.Position(d.End())
	name := d.Name.Name
	if d.Recv != nil && len(d.Recv.List) > 0 {
		name = recvName(d.Recv.List[0].Type) + "." + name
	}
	st.fns = append(st.fns, fn{fmt.Sprintf("%s:%d", path, start.Line), name, end.Line - start.Line + 1})
}

// exportedSpecs counts the exported types, variables and constants of d.
func exportedSpecs(d *ast.GenDecl) int {
	n := 0
	for _, s := range d.Specs {
		switch s := s.(type) {
		case *ast.TypeSpec:
			if s.Name.IsExported() {
				n++
			}
		case *ast.ValueSpec:
			for _, id := range s.Names {
				if id.IsExported() {
					n++
				}
			}
		}
	}
	return n
}

func (st *stats) print(top int) {
	sort.Slice(st.fns, func(i, j int) bool { return st.fns[i].lines > st.fns[j].lines })
	fmt.Printf("longest functions (lines):\n")
	for i := 0; i < top && i < len(st.fns); i++ {
		fmt.Printf("%5d %s %s\n", st.fns[i].lines, st.fns[i].name, st.fns[i].pos)
	}
	fmt.Printf("files over %d lines: %d\n", st.maxLines, len(st.long))
	for _, l := range st.long {
		fmt.Println(l)
	}
	var pkgs []string
	for p := range st.exported {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	fmt.Printf("exported identifiers per package (functions, methods, types, vars, consts):\n")
	for _, p := range pkgs {
		fmt.Printf("%5d %s\n", st.exported[p], p)
	}
}

func recvName(e ast.Expr) string {
	switch t := e.(type) {
	case *ast.StarExpr:
		return recvName(t.X)
	case *ast.Ident:
		return t.Name
	case *ast.IndexExpr:
		return recvName(t.X)
	}
	return "?"
}

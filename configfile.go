package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// source is where node settings come from: cli.Context itself, or the
// command line layered over a --config file.
type source interface {
	IsSet(name string) bool
	String(name string) string
	StringSlice(name string) []string
	Int(name string) int
	Duration(name string) time.Duration
	Bool(name string) bool
}

// fileSource layers a config file under the command line: a flag given on
// the command line or in the environment wins over the file, the file wins
// over the flag's default. For a repeatable flag the file's lines are used
// only when the flag was not given at all.
type fileSource struct {
	*cli.Context
	vals map[string][]string
}

func (s fileSource) file(name string) ([]string, bool) {
	if s.Context.IsSet(name) {
		return nil, false
	}
	v, ok := s.vals[name]
	return v, ok
}

func (s fileSource) IsSet(name string) bool {
	_, inFile := s.vals[name]
	return s.Context.IsSet(name) || inFile
}

func (s fileSource) String(name string) string {
	if v, ok := s.file(name); ok {
		return v[len(v)-1]
	}
	return s.Context.String(name)
}

func (s fileSource) StringSlice(name string) []string {
	if v, ok := s.file(name); ok {
		return v
	}
	return s.Context.StringSlice(name)
}

// The typed getters below parse values that loadConfigFile has already
// checked, so the errors cannot happen.
func (s fileSource) Int(name string) int {
	if v, ok := s.file(name); ok {
		n, _ := strconv.Atoi(v[len(v)-1])
		return n
	}
	return s.Context.Int(name)
}

func (s fileSource) Duration(name string) time.Duration {
	if v, ok := s.file(name); ok {
		d, _ := time.ParseDuration(v[len(v)-1])
		return d
	}
	return s.Context.Duration(name)
}

func (s fileSource) Bool(name string) bool {
	if v, ok := s.file(name); ok {
		b, _ := strconv.ParseBool(v[len(v)-1])
		return b
	}
	return s.Context.Bool(name)
}

// loadConfigFile reads a config file of `key = value` lines whose keys are
// the node's flag names without dashes in front ("announce = redis:6379=12345");
// a repeatable key may appear on several lines. Blank lines and lines
// starting with # are ignored. Every key and value is checked against the
// flag it stands for, so a bad file fails as a whole, naming file and line.
func loadConfigFile(path string, flags []cli.Flag) (map[string][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	defer f.Close()
	kinds := map[string]cli.Flag{}
	for _, fl := range flags {
		kinds[fl.Names()[0]] = fl
	}
	vals := map[string][]string{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if line == 1 {
			// A byte order mark, as Windows editors write UTF-8.
			text = strings.TrimPrefix(text, "\ufeff")
		}
		text = strings.TrimSpace(text)
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		key, val, ok := strings.Cut(text, "=")
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		fl, known := kinds[key]
		switch {
		case !ok:
			// The line itself is not echoed: it may be a pasted secret.
			return nil, fmt.Errorf("--config %s:%d: want key = value", path, line)
		case !known || key == "config":
			return nil, fmt.Errorf("--config %s:%d: unknown key %q (keys are the flag names, e.g. announce)", path, line, key)
		}
		var perr error
		switch fl.(type) {
		case *cli.IntFlag:
			_, perr = strconv.Atoi(val)
		case *cli.DurationFlag:
			_, perr = time.ParseDuration(val)
		case *cli.BoolFlag:
			_, perr = strconv.ParseBool(val)
		}
		// Only a repeatable key may come back: of two lines for one
		// setting, one would be ignored.
		if _, repeatable := fl.(*cli.StringSliceFlag); perr == nil && !repeatable && len(vals[key]) > 0 {
			perr = fmt.Errorf("given twice")
		}
		if perr != nil {
			return nil, fmt.Errorf("--config %s:%d: %s: bad value %q: %v", path, line, key, val, perr)
		}
		vals[key] = append(vals[key], val)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	return vals, nil
}

//go:build linux

package forward

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestLoopsFrom: AMBASSADOR_FORWARD_LOOPS sets the number of event loops
// when it is an integer from 1 to 256; unset, the default holds; any other
// value is ignored with an error that names it, and the default holds.
func TestLoopsFrom(t *testing.T) {
	for _, c := range []struct {
		env  string
		want int
		bad  bool
	}{
		{"", 3, false},
		{"1", 1, false},
		{"2", 2, false},
		{"256", 256, false},
		{"0", 3, true},
		{"-1", 3, true},
		{"257", 3, true},
		{"two", 3, true},
		{" 2", 3, true},
		{"2.0", 3, true},
	} {
		n, err := loopsFrom(c.env, 3)
		if n != c.want || (err != nil) != c.bad {
			t.Errorf("loopsFrom(%q, 3) = %d, %v; want %d, error %v", c.env, n, err, c.want, c.bad)
		}
		if err != nil && !strings.Contains(err.Error(), "AMBASSADOR_FORWARD_LOOPS") {
			t.Errorf("loopsFrom(%q): error %q does not name the variable", c.env, err)
		}
	}
}

// TestLoopCountFromEnv runs this test binary again with the variable set,
// so that the package's own start reads it: a good value becomes
// loopCount, and a bad one leaves the default and logs a warning.
func TestLoopCountFromEnv(t *testing.T) {
	if want := os.Getenv("AMB_TEST_LOOPS_WANT"); want != "" {
		if got := strings.TrimSpace(want); got != strconv.Itoa(loopCount) {
			t.Fatalf("AMBASSADOR_FORWARD_LOOPS=%q: loopCount %d, want %s", os.Getenv("AMBASSADOR_FORWARD_LOOPS"), loopCount, want)
		}
		return
	}
	def := strconv.Itoa(loopCount)
	if os.Getenv("AMBASSADOR_FORWARD_LOOPS") != "" {
		t.Skip("AMBASSADOR_FORWARD_LOOPS set for the whole run")
	}
	for _, c := range []struct{ env, want, log string }{
		{"5", "5", ""},
		{"1", "1", ""},
		{"zero", def, `AMBASSADOR_FORWARD_LOOPS "zero" is not an integer`},
	} {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestLoopCountFromEnv$", "-test.count=1")
		cmd.Env = append(os.Environ(), "AMBASSADOR_FORWARD_LOOPS="+c.env, "AMB_TEST_LOOPS_WANT="+c.want)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("AMBASSADOR_FORWARD_LOOPS=%s: %v\n%s", c.env, err, out)
			continue
		}
		if c.log != "" && !strings.Contains(string(out), c.log) {
			t.Errorf("AMBASSADOR_FORWARD_LOOPS=%s: no warning %q in\n%s", c.env, c.log, out)
		}
	}
}

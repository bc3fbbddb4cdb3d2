package main

import (
	"fmt"
	"regexp"
	"testing"
)

// Every code of the table is in the help, once, and no two share a value.
func TestExitStatusHelpFromTable(t *testing.T) {
	seen := map[int]bool{}
	for _, c := range exitCodes {
		if seen[c.code] {
			t.Errorf("exit code %d is in the table twice", c.code)
		}
		seen[c.code] = true
		re := regexp.MustCompile(fmt.Sprintf(`(?m)^  %d +\S`, c.code))
		if n := len(re.FindAllString(exitStatusHelp, -1)); n != 1 {
			t.Errorf("EXIT STATUS lists %d %d times, want once:\n%s", c.code, n, exitStatusHelp)
		}
	}
	help := newRootCommand().Long
	if !regexp.MustCompile(`EXIT STATUS\n  0 +success`).MatchString(help) {
		t.Errorf("the root command's help has no generated EXIT STATUS:\n%s", help)
	}
}

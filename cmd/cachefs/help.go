package main

import (
	"embed"
	"strings"
)

// The commands' long descriptions are prose, kept as text files beside
// the code that implements them.
//
//go:embed help/*.txt
var helpFiles embed.FS

// help is the long description of the command name, followed by tail.
func help(name, tail string) string {
	b, err := helpFiles.ReadFile("help/" + name + ".txt")
	if err != nil {
		panic(err) // embedded at build time
	}
	return strings.TrimSuffix(string(b), "\n") + tail
}

package taskstream

import (
	"os"
	"strings"
	"testing"
)

// The README's Go example is examples/readme/main.go, word for word; the integration test
// (tests/integration/test_sdk_go.py) runs that file against the processor.
func TestReadmeExampleIsTheExampleProgram(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, found := strings.Cut(string(readme), "\n## Go SDK\n")
	if !found {
		t.Fatal("README.md has no `## Go SDK` section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	_, block, found := strings.Cut(section, "```go\n")
	if !found {
		t.Fatal("the Go SDK section has no ```go block")
	}
	block, _, _ = strings.Cut(block, "```\n")
	program, err := os.ReadFile("examples/readme/main.go")
	if err != nil {
		t.Fatal(err)
	}
	if block != string(program) {
		t.Error("the README's Go block differs from sdks/go/examples/readme/main.go: copy the file into the README")
	}
}

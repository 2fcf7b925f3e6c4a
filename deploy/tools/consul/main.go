// Command consul is stagemesh's build of the Consul CLI and agent.
//
// Consul cannot be installed with a plain `go install` from the module proxy
// (its go.mod carries replace directives), so stagemesh keeps this small
// wrapper module that depends on github.com/hashicorp/consul at a pinned
// version and assembles the same command set the official binary exposes.
// deploy/tools/install.sh builds it; see docs/tools.md.
package main

import (
	"fmt"
	"io"
	"log"
	"os"
	"sort"

	mcli "github.com/mitchellh/cli"

	"github.com/hashicorp/consul/command"
	consulcli "github.com/hashicorp/consul/command/cli"
	"github.com/hashicorp/consul/command/version"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	// Consul's packages log through the standard logger during init; the
	// agent sets up its own logger later, so silence the default one.
	log.SetOutput(io.Discard)

	ui := &consulcli.BasicUI{
		BasicUi: mcli.BasicUi{Writer: os.Stdout, ErrorWriter: os.Stderr},
	}

	commands := command.RegisteredCommands(ui)
	visible := make([]string, 0, len(commands))
	for name := range commands {
		visible = append(visible, name)
	}
	sort.Strings(visible)

	app := &mcli.CLI{
		Name:         "consul",
		Args:         args,
		Commands:     commands,
		Autocomplete: true,
		HelpFunc:     mcli.FilteredHelpFunc(visible, mcli.BasicHelpFunc("consul")),
		HelpWriter:   os.Stdout,
		ErrorWriter:  os.Stderr,
	}

	// `consul -v` / `consul --version` behave like `consul version`.
	if app.IsVersion() {
		return version.New(ui).Run(nil)
	}

	code, err := app.Run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "consul: %v\n", err)
		return 1
	}
	return code
}

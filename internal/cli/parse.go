package cli

import (
	"fmt"
	"io"
	"strconv"

	"github.com/alecthomas/kong"

	"github.com/sr-wrapper/sr-wrapper/internal/buildinfo"
	"github.com/sr-wrapper/sr-wrapper/internal/health"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
)

const wrapperDescription = `Run COMMAND as a child and keep it registered in a service registry for
exactly as long as it lives: the child starts at once, the service is
registered beside it and heartbeated, signals are forwarded, and when the
child exits the service is deregistered and the child's exit status returned.

Example:
  sr-wrapper --id=web1 --tags=http,apache --metadata=port=80 \
    --username=ops --api-key-file=/etc/sr/key -- /usr/sbin/apache2ctl -DFOREGROUND

Exit status: the child's; 128+N if signal N killed it; 2 usage error;
100 --abort-on-failure gave up; 126 COMMAND not executable; 127 not found.`

const wrapperRegistryHelp = "Registry to use: http(s)://host:port/v1.0 for the Service Registry API, or etcd://host:2379[,host:2379...][/prefix] (etcds:// for TLS) for etcd v3."

// ErrExit is returned by the parse functions when the command line asked
// for output rather than a run (--help, --version); the caller exits with
// the given status.
type ErrExit struct{ Code int }

func (e *ErrExit) Error() string { return fmt.Sprintf("exit %d", e.Code) }

// ParseWrapper parses sr-wrapper's arguments (without the program name).
// Help and version go to stdout and come back as *ErrExit with status 0;
// any usage error is returned as an error whose text names the flag and
// the rule, for the caller to print and exit with ExitUsage.
//
// A good command line is parsed without kong (parseFast), which gives the
// same result faster; kong parses every other.
func ParseWrapper(args []string, version buildinfo.Info, getenv func(string) string, stdout, stderr io.Writer) (*WrapperConfig, error) {
	var fast Wrapper
	if given, ok := parseFast(&fast, args, wrapperDefaultVars()); ok {
		fast.given = given
		return fast.Config(getenv)
	}
	return parseWrapperKong(args, version, getenv, stdout, stderr)
}

// parseWrapperKong is ParseWrapper with kong alone.
func parseWrapperKong(args []string, version buildinfo.Info, getenv func(string) string, stdout, stderr io.Writer) (*WrapperConfig, error) {
	w, ctx, err := kongWrapper(args, version, stdout, stderr)
	if err != nil {
		return nil, err
	}
	w.given = givenFlags(ctx)
	return w.Config(getenv)
}

// kongWrapper parses sr-wrapper's command line with kong.
func kongWrapper(args []string, version buildinfo.Info, stdout, stderr io.Writer) (*Wrapper, *kong.Context, error) {
	var w struct {
		Wrapper `embed:""`
		Version kong.VersionFlag `name:"version" help:"Print the version and exit."`
	}
	vars := kong.Vars{"registry_help": wrapperRegistryHelp}
	for k, v := range wrapperDefaultVars() {
		vars[k] = v
	}
	ctx, err := Parse(&w, "sr-wrapper", wrapperDescription, vars, args, version, stdout, stderr)
	if err != nil {
		return nil, nil, err
	}
	return &w.Wrapper, ctx, nil
}

// wrapperDefaultVars are the variables sr-wrapper's defaults use.
func wrapperDefaultVars() map[string]string {
	return map[string]string{
		"default_registry": srapi.DefaultRegistryURL,
		"check_interval":   health.DefaultInterval.String(),
		"check_timeout":    health.DefaultTimeout.String(),
		"check_rise":       strconv.Itoa(health.DefaultRise),
		"check_fall":       strconv.Itoa(health.DefaultFall),
	}
}

// Parse parses a command's arguments (without the program name) into
// target, a kong grammar, for every command of the repository. vars are
// the grammar's own, beside version and default_registry; a
// kong.VersionFlag field prints "<name> <version>". Help and version go
// to stdout and come back as *ErrExit with status 0; any other error is a
// usage error (kong's *kong.ParseError knows how far parsing got), for
// the caller to print and exit with ExitUsage.
func Parse(target any, name, description string, vars kong.Vars, args []string, version buildinfo.Info, stdout, stderr io.Writer) (*kong.Context, error) {
	exitCode := -1
	parser, err := kong.New(target,
		kong.Name(name),
		kong.Description(description),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { exitCode = code; panic(exitSentinel{}) }),
		kong.Vars{
			"version":          name + " " + version.String(),
			"default_registry": srapi.DefaultRegistryURL,
		},
		vars,
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, NoExpandSubcommands: false}),
	)
	if err != nil {
		return nil, fmt.Errorf("build %s's command line: %w", name, err)
	}
	var ctx *kong.Context
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(exitSentinel); !ok {
					panic(r)
				}
			}
		}()
		ctx, err = parser.Parse(args)
	}()
	if exitCode >= 0 {
		return nil, &ErrExit{Code: exitCode}
	}
	if err != nil {
		return nil, err
	}
	return ctx, nil
}

type exitSentinel struct{}

// givenFlags names the flags given on the command line, not those that
// got their value from a default or the environment.
func givenFlags(ctx *kong.Context) map[string]bool {
	given := map[string]bool{}
	for _, p := range ctx.Path {
		if p.Flag != nil && !p.Resolved {
			given[p.Flag.Name] = true
		}
	}
	return given
}

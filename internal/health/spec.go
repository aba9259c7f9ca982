package health

import (
	"fmt"
	"os"
)

// Spec is a health check as the wrapper's flags give it, as plain data:
// one target and its timing. Validate checks it before anything starts;
// Checker builds the checker, the one place where any of them is built.
type Spec struct {
	HTTP    string // --check-http URL
	TCP     string // --check-tcp HOST:PORT
	Command string // --check-cmd, a command line (see ParseCommand)
	Timing
}

// Validate reports what Checker would reject, naming the flag: no target
// or more than one, a bad URL or address, a command line that does not
// parse or a command not found in the wrapper's PATH, a bad timing.
func (s Spec) Validate() error {
	if _, err := s.checker(nil); err != nil {
		return err
	}
	return s.Timing.Validate()
}

// Checker builds the checker; a command check starts and waits for its
// processes through opts.Starter.
func (s Spec) Checker(opts CommandOptions) (Checker, error) {
	return s.checker(&opts)
}

// checker builds the checker, or with nil opts only checks that it could.
func (s Spec) checker(opts *CommandOptions) (Checker, error) {
	given := 0
	for _, v := range []string{s.HTTP, s.TCP, s.Command} {
		if v != "" {
			given++
		}
	}
	var c Checker
	var err error
	flag := "--check-cmd"
	switch {
	case given != 1:
		return nil, fmt.Errorf("--check-http, --check-tcp, --check-cmd: give one check, not %d", given)
	case s.HTTP != "":
		flag = "--check-http"
		c, err = HTTP(s.HTTP)
	case s.TCP != "":
		flag = "--check-tcp"
		c, err = TCP(s.TCP)
	default:
		var argv []string
		if argv, err = ParseCommand(s.Command); err != nil {
			break
		}
		if opts == nil {
			_, err = resolveArgv(argv, os.Environ(), "")
			break
		}
		c, err = Command(argv, *opts)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return c, nil
}

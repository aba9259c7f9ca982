// Package logging builds the zap loggers of the project's commands: JSON
// when stderr is not a terminal (journald, docker logs, supervisord files),
// readable console lines when a person is watching.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
)

// Formats accepted by New.
const (
	FormatAuto    = "auto"
	FormatJSON    = "json"
	FormatConsole = "console"
)

// Options configure a logger. The zero value logs at info level, format
// auto, to stderr.
type Options struct {
	Format string    // auto (default), json or console
	Level  string    // debug, info (default), warn, error
	Output io.Writer // default os.Stderr
}

// New returns a logger for opts, or an error naming the bad option.
func New(opts Options) (*zap.Logger, error) {
	level := zapcore.InfoLevel
	if opts.Level != "" {
		if err := level.UnmarshalText([]byte(strings.ToLower(opts.Level))); err != nil {
			return nil, fmt.Errorf("--log-level: must be one of debug, info, warn, error; got %q", opts.Level)
		}
	}
	out := opts.Output
	if out == nil {
		out = os.Stderr
	}
	format := opts.Format
	if format == "" || format == FormatAuto {
		format = FormatJSON
		if isTerminal(out) {
			format = FormatConsole
		}
	}
	var enc zapcore.Encoder
	switch format {
	case FormatJSON:
		cfg := zap.NewProductionEncoderConfig()
		cfg.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(cfg)
	case FormatConsole:
		cfg := zap.NewDevelopmentEncoderConfig()
		cfg.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		cfg.EncodeCaller = nil
		cfg.CallerKey = ""
		enc = zapcore.NewConsoleEncoder(cfg)
	default:
		return nil, fmt.Errorf("--log-format: must be one of auto, json, console; got %q", opts.Format)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(out)), level)
	return zap.New(core), nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

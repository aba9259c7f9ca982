package cli

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// parseFast parses sr-wrapper's command line the way kong does, for the
// command lines it understands fully, and reports false for every other:
// --help, --version, an unknown or malformed flag, a value that does not
// parse, a missing required flag. The caller then parses with kong, which
// prints the help or the version or words the error, so that kong stays
// the one authority on what sr-wrapper accepts; parseFast only takes the
// path of a good command line, which every start of a service takes.
//
// It exists for the wrapper's start-up time: building kong's model and
// interpolating its help strings costs about 1.8 ms on a small machine,
// spent while the child waits to be started. parseFast reads the same
// struct tags (name, short, default, env, enum, type, sep, arg) and
// spends a few tens of microseconds. FuzzFastParseMatchesKong holds it
// to kong's results.
//
// One difference is on purpose: arguments that are not valid UTF-8 reach
// the child unchanged, as execve takes them, where kong would have
// replaced their bytes with U+FFFD.
//
// vars interpolates ${name} in defaults, as kong.Vars do. It returns the
// names of the flags given on the command line.
func parseFast(w *Wrapper, args []string, vars map[string]string) (given map[string]bool, ok bool) {
	flags, positional, ok := wrapperFlags(reflect.ValueOf(w).Elem(), vars)
	if !ok {
		return nil, false
	}
	byName := make(map[string]*fastFlag, len(flags))
	byShort := map[byte]*fastFlag{}
	for _, f := range flags {
		byName[f.name] = f
		if f.short != 0 {
			byShort[f.short] = f
		}
	}
	given = map[string]bool{}
	set := func(f *fastFlag, value string) bool {
		if given[f.name] && f.field.Kind() != reflect.Slice {
			// Last wins, as in kong; the fields decode afresh.
			f.field.Set(reflect.Zero(f.field.Type()))
		}
		given[f.name] = true
		return f.decode(value)
	}
	// isValue: kong takes a separate token as a flag's value only when
	// it does not look like a flag itself.
	isValue := func(s string) bool { return !strings.HasPrefix(s, "-") }

	var command []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--" || !strings.HasPrefix(a, "-") || a == "-":
			// kong's passthrough argument keeps the separator.
			command = args[i:]
			i = len(args)
		case strings.HasPrefix(a, "--"):
			name, value, hasValue := strings.Cut(a[2:], "=")
			f := byName[name]
			switch {
			case f == nil:
				return nil, false
			case f.isBool && !hasValue:
				value = "true"
			case !hasValue:
				if i+1 >= len(args) || !isValue(args[i+1]) {
					return nil, false
				}
				i++
				value = args[i]
			}
			if !set(f, value) {
				return nil, false
			}
		default: // -X VALUE, -XVALUE
			f := byShort[a[1]]
			if f == nil || f.isBool {
				return nil, false
			}
			value := a[2:]
			if value == "" {
				if i+1 >= len(args) || !isValue(args[i+1]) {
					return nil, false
				}
				i++
				value = args[i]
			}
			if !set(f, value) {
				return nil, false
			}
		}
	}

	// What the command line left unset comes from the environment, then
	// the default, as kong resets a value before parsing.
	for _, f := range flags {
		if v, ok := lookupFirst(f.envs); ok && given[f.name] {
			// kong refuses a bad value in the environment even when the
			// command line overrides it.
			scratch := *f
			scratch.field = reflect.New(f.field.Type()).Elem()
			if !scratch.decode(v) {
				return nil, false
			}
			continue
		} else if ok {
			if !f.decode(v) {
				return nil, false
			}
			continue
		}
		if given[f.name] {
			continue
		}
		if f.hasDefault && !f.decode(f.def) {
			return nil, false
		}
	}
	for _, f := range flags {
		if f.required && !given[f.name] {
			if _, fromEnv := lookupFirst(f.envs); !fromEnv {
				return nil, false
			}
		}
		if f.enum != nil && !f.enum[f.field.String()] {
			return nil, false
		}
	}
	if positional.IsValid() && command != nil {
		positional.Set(reflect.ValueOf(command))
	}
	return given, true
}

func lookupFirst(envs []string) (string, bool) {
	for _, e := range envs {
		if v, ok := os.LookupEnv(e); ok {
			return v, true
		}
	}
	return "", false
}

// fastFlag is one flag of the grammar, read from its struct tags.
type fastFlag struct {
	name       string
	short      byte
	def        string
	hasDefault bool
	envs       []string
	enum       map[string]bool
	isPath     bool
	isBool     bool
	required   bool
	field      reflect.Value
}

var durationType = reflect.TypeOf(time.Duration(0))

// decode sets the field from a value as kong's mappers do, and reports
// false for a value kong would reject or a case this parser leaves to it.
func (f *fastFlag) decode(s string) bool {
	v := f.field
	switch {
	case f.isPath:
		if strings.HasPrefix(s, "~") || s == "" || s == "-" {
			return false // kong's own rules (home directory, "" with a default, stdin)
		}
		if !filepath.IsAbs(s) {
			abs, err := filepath.Abs(s)
			if err != nil {
				return false
			}
			s = abs
		}
		v.SetString(s)
	case v.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return false
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Int:
		n, err := strconv.ParseInt(s, 0, strconv.IntSize)
		if err != nil {
			return false
		}
		v.SetInt(n)
	case v.Kind() == reflect.Bool:
		switch strings.ToLower(s) {
		case "true", "1", "yes":
			v.SetBool(true)
		case "false", "0", "no":
			v.SetBool(false)
		default:
			return false
		}
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		v.Set(reflect.Append(v, reflect.ValueOf(s)))
	default:
		return false
	}
	return true
}

// wrapperFlags lists the flags of the grammar in v (a struct, with its
// embedded structs) and its passthrough positional. It reports false for
// a tag it does not know how to follow, so that a flag added to Wrapper
// with a kong feature this parser lacks sends every command line to kong
// instead of being parsed wrongly.
func wrapperFlags(v reflect.Value, vars map[string]string) (flags []*fastFlag, positional reflect.Value, ok bool) {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		tags := parseTags(string(sf.Tag))
		if _, skip := tags["kong"]; skip || !sf.IsExported() {
			continue
		}
		for key := range tags {
			switch key {
			case "name", "short", "default", "env", "enum", "type", "sep", "help", "placeholder", "group", "required",
				"embed", "arg", "optional", "passthrough":
			default:
				return nil, reflect.Value{}, false
			}
		}
		if _, embed := tags["embed"]; embed {
			sub, pos, ok := wrapperFlags(v.Field(i), vars)
			if !ok {
				return nil, reflect.Value{}, false
			}
			flags = append(flags, sub...)
			if pos.IsValid() {
				positional = pos
			}
			continue
		}
		if _, arg := tags["arg"]; arg {
			_, passthrough := tags["passthrough"]
			_, optional := tags["optional"]
			if !passthrough || !optional || positional.IsValid() || sf.Type != reflect.TypeOf([]string(nil)) {
				return nil, reflect.Value{}, false
			}
			positional = v.Field(i)
			continue
		}
		f := &fastFlag{name: tags["name"], field: v.Field(i)}
		if f.name == "" {
			return nil, reflect.Value{}, false
		}
		if s := tags["short"]; s != "" {
			if len(s) != 1 {
				return nil, reflect.Value{}, false
			}
			f.short = s[0]
		}
		if def, ok := tags["default"]; ok {
			if def, ok = interpolate(def, vars); !ok {
				return nil, reflect.Value{}, false
			}
			f.def, f.hasDefault = def, true
		}
		if env := tags["env"]; env != "" {
			f.envs = strings.Split(env, ",")
		}
		if enum, ok := tags["enum"]; ok {
			f.enum = map[string]bool{}
			for _, e := range strings.Split(enum, ",") {
				f.enum[e] = true
			}
		}
		switch tags["type"] {
		case "":
		case "path":
			f.isPath = sf.Type.Kind() == reflect.String
			if !f.isPath {
				return nil, reflect.Value{}, false
			}
		default:
			return nil, reflect.Value{}, false
		}
		if sf.Type.Kind() == reflect.Slice && tags["sep"] != "none" {
			return nil, reflect.Value{}, false // kong would split on commas
		}
		_, f.required = tags["required"]
		f.isBool = sf.Type.Kind() == reflect.Bool
		flags = append(flags, f)
	}
	return flags, positional, true
}

// interpolate replaces ${name} with vars[name], and reports false for a
// variable it does not have.
func interpolate(s string, vars map[string]string) (string, bool) {
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			return s, true
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return "", false
		}
		v, ok := vars[s[i+2:i+j]]
		if !ok {
			return "", false
		}
		s = s[:i] + v + s[i+j+1:]
	}
}

// parseTags splits a struct tag into its key:"value" pairs, in one pass
// (reflect.StructTag.Get scans the whole tag for each key).
func parseTags(tag string) map[string]string {
	out := map[string]string{}
	for tag != "" {
		tag = strings.TrimLeft(tag, " ")
		i := strings.IndexByte(tag, ':')
		if i <= 0 || i+1 >= len(tag) || tag[i+1] != '"' {
			break
		}
		key := tag[:i]
		tag = tag[i+1:]
		// The value is a Go string literal: find its end, skipping
		// escaped quotes.
		j := 1
		for j < len(tag) && tag[j] != '"' {
			if tag[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(tag) {
			break
		}
		value, err := strconv.Unquote(tag[:j+1])
		if err != nil {
			break
		}
		out[key] = value
		tag = tag[j+1:]
	}
	return out
}

package srctl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
)

// Services

// servicesList reads the whole list (so that the cache always holds the
// whole list) and filters it by tag here, with the API's rule: a service
// matches when one of its tags is the tag. With --limit it reads only that
// many, filtered by the server, and leaves the cache alone: a partial list
// must not replace a whole one.
func (r *runner) servicesList(ctx context.Context) int {
	whole := r.cfg.Limit == 0
	opts := r.opts()
	if !whole {
		opts.Tag = r.cfg.Tag
	}
	services, err := srapi.All(ctx, r.c.ListServices, opts, r.cfg.Limit)
	if err != nil {
		if ctx.Err() == nil && unreachable(err) {
			return r.staleServices(err)
		}
		return r.exit(ctx, err)
	}
	if whole {
		r.cacheServices(ctx, services)
		services = withTag(services, r.cfg.Tag)
	}
	return r.exit(ctx, r.printServices(services))
}

// unreachable says whether err means the registry could not answer: no
// reply at all, or a server failure (5xx), from every frontend. Refusals
// (4xx) are answers, and a certificate that does not verify is a
// configuration to fix, not a registry to wait for.
func unreachable(err error) bool {
	if srapi.IsPermanent(err) {
		return false
	}
	if _, ok := errors.AsType[*srapi.TransportError](err); ok {
		return true
	}
	return srapi.StatusCode(err) >= 500
}

func withTag(services []api.Service, tag string) []api.Service {
	if tag == "" {
		return services
	}
	out := make([]api.Service, 0, len(services))
	for _, s := range services {
		if slices.Contains(s.Tags, tag) {
			out = append(out, s)
		}
	}
	return out
}

func (r *runner) cache() (*serviceCache, error) {
	return newServiceCache(r.env.Getenv(CacheDirEnv), r.c)
}

// cacheServices saves a whole list. A failure is worth a warning, not a
// failed command: the list itself was shown.
func (r *runner) cacheServices(ctx context.Context, services []api.Service) {
	sc, err := r.cache()
	if err == nil {
		// The client has a token by now: this does no I/O.
		tenant, _ := r.c.TenantID(ctx)
		err = sc.save(tenant, services, time.Now())
	}
	if err != nil {
		r.warnf("warning: %v", err)
	}
}

// staleServices shows the cached list after cause made the registry
// unreachable, or fails with cause when there is none.
func (r *runner) staleServices(cause error) int {
	sc, err := r.cache()
	var cached *cachedServices
	if err == nil {
		cached, err = sc.load()
	}
	if err != nil {
		if !errors.Is(err, errNoCache) {
			r.warnf("warning: %v", err)
		}
		fmt.Fprintf(r.stderr, "srctl: %s\n", oneLine(cause.Error()))
		return ExitError
	}
	services := withTag(cached.Services, r.cfg.Tag)
	if r.cfg.Limit > 0 && len(services) > r.cfg.Limit {
		services = services[:r.cfg.Limit]
	}
	r.warnf("warning: registry unreachable (%v); showing the cached list, stale, from %s (%s)",
		cause, localTime(cached.FetchedAt), ago(time.Since(time.UnixMilli(cached.FetchedAt))))
	if err := r.printServices(services); err != nil {
		fmt.Fprintf(r.stderr, "srctl: %s\n", oneLine(err.Error()))
		return ExitError
	}
	return ExitStale
}

func (r *runner) printServices(services []api.Service) error {
	if r.jsonOutput() {
		return writeJSON(r.stdout, nonNil(services))
	}
	rows := make([][]string, len(services))
	for i, s := range services {
		rows[i] = serviceRow(s)
	}
	return writeTable(r.stdout, serviceHeader, rows)
}

func (r *runner) servicesGet(ctx context.Context) error {
	s, err := r.c.GetService(ctx, r.cfg.ID)
	if err != nil {
		return err
	}
	if r.jsonOutput() {
		return writeJSON(r.stdout, s)
	}
	return writeTable(r.stdout, serviceHeader, [][]string{serviceRow(*s)})
}

func (r *runner) servicesRm(ctx context.Context) error {
	if err := r.c.DeleteService(ctx, r.cfg.ID); err != nil {
		return err
	}
	return r.done("removed service " + r.cfg.ID)
}

// done confirms a change that the API answers with no body: a line for a
// person, nothing for a script (the exit status says it all).
func (r *runner) done(msg string) error {
	if r.jsonOutput() {
		return nil
	}
	if _, err := fmt.Fprintln(r.stdout, cell(msg)); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// Sessions

func (r *runner) sessionsList(ctx context.Context) error {
	sessions, err := srapi.All(ctx, r.c.ListSessions, r.opts(), r.cfg.Limit)
	if err != nil {
		return err
	}
	return r.printSessions(sessions)
}

func (r *runner) sessionsGet(ctx context.Context) error {
	s, err := r.c.GetSession(ctx, r.cfg.ID)
	if err != nil {
		return err
	}
	if r.jsonOutput() {
		return writeJSON(r.stdout, s)
	}
	return r.printSessions([]api.Session{*s})
}

func (r *runner) printSessions(sessions []api.Session) error {
	if r.jsonOutput() {
		return writeJSON(r.stdout, nonNil(sessions))
	}
	now := time.Now()
	rows := make([][]string, len(sessions))
	for i, s := range sessions {
		rows[i] = sessionRow(s, now)
	}
	return writeTable(r.stdout, sessionHeader, rows)
}

// Events

// eventsList lists the feed from --marker (included) or, without one, the
// last hour, oldest first. --since is applied here to the events'
// timestamps: the API has no such filter.
func (r *runner) eventsList(ctx context.Context) error {
	opts := r.opts()
	opts.Marker = r.cfg.Marker
	var cutoff int64
	if r.cfg.Since > 0 {
		cutoff = time.Now().Add(-r.cfg.Since).UnixMilli()
	}
	var events []api.Event
	for e, err := range srapi.Each(ctx, r.c.ListEvents, opts) {
		if err != nil {
			return err
		}
		if e.Timestamp < cutoff {
			continue
		}
		events = append(events, e)
		if r.cfg.Limit > 0 && len(events) >= r.cfg.Limit {
			break
		}
	}
	if r.jsonOutput() {
		return writeJSON(r.stdout, nonNil(events))
	}
	now := time.Now()
	rows := make([][]string, len(events))
	for i, e := range events {
		rows[i] = eventRow(e, now)
	}
	return writeTable(r.stdout, eventHeader, rows)
}

// Configuration

func (r *runner) configList(ctx context.Context) error {
	page := r.c.ListConfiguration
	if ns := r.cfg.ID; ns != "" {
		page = func(ctx context.Context, opts srapi.ListOptions) (*api.List[api.ConfigurationValue], error) {
			return r.c.ListConfigurationNamespace(ctx, ns, opts)
		}
	}
	values, err := srapi.All(ctx, page, r.opts(), r.cfg.Limit)
	if err != nil {
		return err
	}
	return r.printConfig(values)
}

func (r *runner) configGet(ctx context.Context) error {
	v, err := r.c.GetConfiguration(ctx, r.cfg.ID)
	if err != nil {
		return err
	}
	if r.jsonOutput() {
		return writeJSON(r.stdout, v)
	}
	return r.printConfig([]api.ConfigurationValue{*v})
}

func (r *runner) printConfig(values []api.ConfigurationValue) error {
	if r.jsonOutput() {
		return writeJSON(r.stdout, nonNil(values))
	}
	rows := make([][]string, len(values))
	for i, v := range values {
		rows[i] = []string{v.ID, v.Value}
	}
	return writeTable(r.stdout, configHeader, rows)
}

func (r *runner) configSet(ctx context.Context) error {
	if err := r.c.SetConfiguration(ctx, r.cfg.ID, r.cfg.Value); err != nil {
		return err
	}
	return r.done("set " + r.cfg.ID + " = " + strconv.Quote(r.cfg.Value))
}

func (r *runner) configRm(ctx context.Context) error {
	if err := r.c.DeleteConfiguration(ctx, r.cfg.ID); err != nil {
		return err
	}
	return r.done("removed " + r.cfg.ID)
}

// Limits and the overview

func (r *runner) limits(ctx context.Context) error {
	l, err := r.c.Limits(ctx)
	if err != nil {
		return err
	}
	if r.jsonOutput() {
		return writeJSON(r.stdout, l)
	}
	res := [][]string{
		{"session", strconv.Itoa(l.Resource.Session)},
		{"service", strconv.Itoa(l.Resource.Service)},
		{"configuration_value", strconv.Itoa(l.Resource.ConfigurationValue)},
	}
	if err := writeTable(r.stdout, []string{"RESOURCE", "LIMIT"}, res); err != nil {
		return err
	}
	if len(l.Rate) == 0 {
		return nil
	}
	paths := make([]string, 0, len(l.Rate))
	for p := range l.Rate {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	rate := make([][]string, len(paths))
	for i, p := range paths {
		rl := l.Rate[p]
		rate[i] = []string{p, strconv.Itoa(rl.Used), strconv.Itoa(rl.Limit), rl.Window}
	}
	if _, err := fmt.Fprintln(r.stdout); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return writeTable(r.stdout, []string{"RATE", "USED", "LIMIT", "WINDOW"}, rate)
}

// overview shows one row per service, with its session's columns; a
// session without services gets a row with "-" for the service.
func (r *runner) overview(ctx context.Context) error {
	entries, err := srapi.All(ctx, r.c.Overview, r.opts(), r.cfg.Limit)
	if err != nil {
		return err
	}
	if r.jsonOutput() {
		return writeJSON(r.stdout, nonNil(entries))
	}
	now := time.Now()
	var rows [][]string
	for _, e := range entries {
		sess := []string{e.Session.ID, strconv.Itoa(e.Session.HeartbeatTimeout) + "s", lastSeen(e.Session.LastSeen, now)}
		if len(e.Services) == 0 {
			rows = append(rows, append(sess, none, none, none))
		}
		for _, s := range e.Services {
			rows = append(rows, append(slices.Clone(sess), s.ID, compactList(s.Tags), compactMap(s.Metadata)))
		}
	}
	return writeTable(r.stdout, []string{"SESSION", "TIMEOUT", "LAST SEEN", "SERVICE", "TAGS", "METADATA"}, rows)
}

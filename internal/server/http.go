package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/dashboard"
	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

const (
	// HeaderResponseID carries the transaction id of every response; faults
	// repeat it as txnId.
	HeaderResponseID = "X-Response-Id"
	headerAuthToken  = "X-Auth-Token"
	contentTypeJSON  = "application/json"

	// lingerBytes and lingerTime bound the reading of an oversized body
	// after its 413 (see tooLarge), like nginx's lingering close.
	lingerBytes = 16 << 20
	lingerTime  = 10 * time.Second
)

// call is one request being answered.
type call struct {
	s   *Server
	w   http.ResponseWriter
	r   *http.Request
	txn string
	// tenant is the authenticated tenant of a /v1.0/{tenant} request.
	tenant string
	// start and sw (which w writes to) are for the requests histogram.
	start time.Duration
	sw    statusWriter
	// chunked is the body of a request that announced no length, nil for
	// the others: a fault that comes before it is read lingers (see
	// lingeringFault).
	chunked *trackedBody
}

// trackedBody tells whether a request body was read to its end.
type trackedBody struct {
	io.ReadCloser
	done bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.done = true
	}
	return n, err
}

// newCall starts answering r: its transaction id, and the writer that
// notes the status code for metrics.
func (s *Server) newCall(w http.ResponseWriter, r *http.Request) *call {
	c := &call{s: s, r: r, txn: s.nextTxn(), start: s.metrics.now(), sw: statusWriter{ResponseWriter: w}}
	c.w = &c.sw
	w.Header()[HeaderResponseID] = []string{c.txn}
	if r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody {
		c.chunked = &trackedBody{ReadCloser: r.Body}
		r.Body = c.chunked
	}
	return c
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	c := s.newCall(w, r)
	defer s.metrics.observe(c)
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			// A bug, not bad input: log it loudly and answer a fault
			// rather than drop the connection.
			s.log.Error("handler panic", zap.Any("panic", v), zap.String("method", r.Method),
				zap.String("path", r.URL.Path), zap.String("txn", c.txn), zap.StackSkip("stack", 1))
			c.fault(http.StatusInternalServerError, api.FaultInternal, "Internal error", "")
		}
	}()
	if r.ContentLength > s.maxBody {
		// Before anything else, so that such a request gets its 413 (and
		// the lingering read that lets the client see it) wherever it goes.
		c.tooLarge()
		return
	}
	path := r.URL.Path
	switch {
	case path == "/v2.0/tokens" || path == "/v2.0/tokens/":
		if r.Method != http.MethodPost {
			c.methodNotAllowed(http.MethodPost)
			return
		}
		s.authenticate(c)
	case strings.HasPrefix(path, "/v1.0/"):
		s.serveTenant(c, path[len("/v1.0/"):])
	case path == "/healthz" || path == "/readyz":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			c.methodNotAllowed(http.MethodGet, http.MethodHead)
			return
		}
		s.health(c, path == "/readyz")
	case path == "/metrics" && s.metrics.onAPI:
		s.serveMetrics(c)
	case dashboard.Owns(path):
		dashboard.Handler{}.ServeHTTP(c.w, r)
	default:
		c.notFoundPath()
	}
}

// health answers GET /healthz (the process serves: always 200) and GET
// /readyz (its store answers now: 200, else 503 with the reason), for
// load balancers. Neither needs a token.
func (s *Server) health(c *call, ready bool) {
	if ready {
		ctx, cancel := context.WithTimeout(c.r.Context(), readyTimeout)
		defer cancel()
		if err := s.store.Ready(ctx); err != nil {
			c.fault(http.StatusServiceUnavailable, api.FaultSystemFailure, "Not ready", err.Error())
			return
		}
	}
	c.json(http.StatusOK, map[string]string{"status": "ok"})
}

// readyTimeout bounds /readyz's check of the store.
const readyTimeout = 3 * time.Second

// serveTenant authenticates a /v1.0/{tenant}/... request and routes it.
func (s *Server) serveTenant(c *call, rest string) {
	tenantID, rest, _ := strings.Cut(rest, "/")
	if tenantID == "" {
		c.notFoundPath()
		return
	}
	token := c.r.Header.Get(headerAuthToken)
	if token == "" {
		c.fault(http.StatusUnauthorized, api.FaultUnauthorized, "Unauthorized", "the X-Auth-Token header is missing; get a token from POST /v2.0/tokens")
		return
	}
	tok, err := s.store.LookupToken(c.r.Context(), token)
	if errors.Is(err, store.ErrNotFound) {
		c.fault(http.StatusUnauthorized, api.FaultUnauthorized, "Unauthorized", "the X-Auth-Token is unknown or expired; authenticate again")
		return
	}
	if err != nil {
		c.storeFault(err, "check the X-Auth-Token", "", "")
		return
	}
	if !s.creds.Load().current(tok) {
		// Its account was removed, moved to another tenant, or given
		// another key by a reload of the credentials since the token was
		// issued.
		c.fault(http.StatusUnauthorized, api.FaultUnauthorized, "Unauthorized", "the X-Auth-Token's account no longer has this tenant or key; authenticate again")
		return
	}
	if tok.Tenant != tenantID {
		c.fault(http.StatusForbidden, api.FaultForbidden, "Forbidden",
			fmt.Sprintf("the token is for tenant %q and cannot access tenant %q", tok.Tenant, truncate(tenantID)))
		return
	}
	c.tenant = tenantID
	if !s.admit(c, rest) {
		return
	}

	resource, id, _ := strings.Cut(rest, "/")
	if resource == "configuration" {
		s.routeConfiguration(c, rest)
		return
	}
	// One trailing slash is forgiven on everything but configuration,
	// where it means "namespace".
	id = strings.TrimSuffix(id, "/")
	switch resource {
	case "sessions":
		id, sub, _ := strings.Cut(id, "/")
		switch {
		case id == "" && sub == "":
			routeList(c, s.listSessions, s.createSession)
		case sub == "":
			routeItem(c, "session", id, api.ValidateSessionID, s.getSession, s.updateSession, s.deleteSession)
		case sub == "heartbeat" && id != "":
			if c.r.Method != http.MethodPost {
				c.methodNotAllowed(http.MethodPost)
				return
			}
			if c.validID("session", id, api.ValidateSessionID) {
				s.heartbeat(c, id)
			}
		default:
			c.notFoundPath()
		}
	case "services":
		switch {
		case id == "":
			routeList(c, s.listServices, s.createService)
		case !strings.Contains(id, "/"):
			routeItem(c, "service", id, api.ValidateServiceID, s.getService, s.updateService, s.deleteService)
		default:
			c.notFoundPath()
		}
	case "events", "limits":
		if id != "" {
			c.notFoundPath()
			return
		}
		if resource == "events" {
			routeList(c, s.listEvents, nil)
		} else {
			routeList(c, s.getLimits, nil)
		}
	case "views":
		if id != "overview" {
			c.notFoundPath()
			return
		}
		routeList(c, s.overview, nil)
	default:
		c.notFoundPath()
	}
}

// routeConfiguration routes rest = "configuration[/<id>]" (see
// configurationID for how the path names an id).
func (s *Server) routeConfiguration(c *call, rest string) {
	id := configurationID(strings.TrimPrefix(strings.TrimPrefix(rest, "configuration"), "/"))
	switch {
	case id == "" || id == "/":
		routeList(c, func(c *call) { s.listConfiguration(c, "") }, nil)
	case api.IsNamespace(id):
		routeList(c, func(c *call) {
			if err := api.ValidateConfigurationID(id); err != nil {
				c.badRequest("Invalid configuration namespace", err)
				return
			}
			s.listConfiguration(c, id)
		}, nil)
	default:
		routeItem(c, "configuration", id, api.ValidateConfigurationID, s.getConfiguration, s.setConfiguration, s.deleteConfiguration)
	}
}

// configurationID is the configuration id (or namespace) that the path p
// below "/configuration/" names: the id as the client wrote it, since
// clients build the path as "/configuration/" + id.
//
//	configId                      -> "configId"
//	/production/cassandra/port    -> "/production/cassandra/port" (the doubled slash is one)
//	production/cassandra/port     -> "/production/cassandra/port"
//	production/cassandra/         -> "/production/cassandra/" (a namespace)
//
// An id without a leading slash cannot hold one (the API's id rule), so a
// path with inner slashes but no doubled one can only mean the slash-led
// id; it is what srctl and hand-written URLs send.
func configurationID(p string) string {
	if strings.Contains(p, "/") && p[0] != '/' {
		return "/" + p
	}
	return p
}

// routeList routes a collection: GET lists it, POST creates in it (when
// create is not nil), any other method is 405. A GET-only resource that is
// not a list (limits) routes the same way.
func routeList(c *call, list, create func(*call)) {
	switch {
	case c.r.Method == http.MethodGet:
		list(c)
	case create == nil:
		c.methodNotAllowed(http.MethodGet)
	case c.r.Method == http.MethodPost:
		create(c)
	default:
		c.methodNotAllowed(http.MethodGet, http.MethodPost)
	}
}

// routeItem routes one object of the given kind: 405 for a method other
// than GET, PUT and DELETE, 400 for an id that breaks validate, else the
// method's handler. The method is checked first so that a wrong method is
// 405 whatever the id.
func routeItem(c *call, kind, id string, validate func(string) error, get, put, del func(*call, string)) {
	var h func(*call, string)
	switch c.r.Method {
	case http.MethodGet:
		h = get
	case http.MethodPut:
		h = put
	case http.MethodDelete:
		h = del
	default:
		c.methodNotAllowed(http.MethodGet, http.MethodPut, http.MethodDelete)
		return
	}
	if c.validID(kind, id, validate) {
		h(c, id)
	}
}

// validID answers 400 "Invalid <kind> id" and returns false when id
// breaks validate.
func (c *call) validID(kind, id string, validate func(string) error) bool {
	if err := validate(id); err != nil {
		c.badRequest("Invalid "+kind+" id", err)
		return false
	}
	return true
}

// valid answers 400 "Validation error" with the first non-nil error and
// returns false, or returns true when every error is nil.
func (c *call) valid(errs ...error) bool {
	for _, err := range errs {
		if err != nil {
			c.badRequest("Validation error", err)
			return false
		}
	}
	return true
}

// fault answers an API fault; one that refuses a chunked body before
// reading it lingers (see lingeringFault). A body with a length is read
// before any fault or, over the limit, gets its own lingering 413; net/http
// itself discards what the handler left of it.
func (c *call) fault(code int, typ, message, details string) {
	if c.chunked != nil && !c.chunked.done {
		c.lingeringFault(code, typ, message, details)
		return
	}
	c.json(code, api.Fault{Type: typ, Code: code, Message: message, Details: details, TxnID: c.txn})
}

func (c *call) badRequest(message string, err error) {
	c.fault(http.StatusBadRequest, api.FaultBadRequest, message, err.Error())
}

func (c *call) notFound(kind, key string) {
	c.fault(http.StatusNotFound, api.FaultNotFound,
		fmt.Sprintf("Object %q with key %q does not exist", kind, truncate(key)), "")
}

func (c *call) notFoundPath() {
	c.fault(http.StatusNotFound, api.FaultNotFound, "Not found",
		fmt.Sprintf("no resource at %s %s", c.r.Method, truncate(c.r.URL.Path)))
}

func (c *call) methodNotAllowed(allowed ...string) {
	list := strings.Join(allowed, ", ")
	c.w.Header().Set("Allow", list)
	c.fault(http.StatusMethodNotAllowed, api.FaultBadRequest, "Method not allowed",
		fmt.Sprintf("%s is not supported on %s; allowed: %s", truncate(c.r.Method), truncate(c.r.URL.Path), list))
}

func (c *call) limitReached(what string, limit int) {
	c.fault(http.StatusBadRequest, api.FaultLimitReached, "Limit has been reached",
		fmt.Sprintf("the account may hold at most %d %s", limit, what))
}

// storeFault answers the fault for an error of the store: 404 for
// ErrNotFound (of the object kind with key id), the account's faults for
// a taken service id or a limit, 503 when the store cannot answer now,
// else 500 (logged). doing says what failed, for the details.
func (c *call) storeFault(err error, doing, kind, id string) {
	var exists *store.ServiceExistsError
	var limit *store.LimitError
	switch {
	case errors.Is(err, store.ErrNotFound) && kind != "":
		c.notFound(kind, id)
	case errors.As(err, &exists):
		c.fault(http.StatusBadRequest, api.FaultServiceWithThisIDExists, "Service with this id already exists",
			fmt.Sprintf("service %q is registered by session %s; it is free again when that session is deleted or expires", exists.ID, exists.SessionID))
	case errors.As(err, &limit):
		c.limitReached(limit.Resource, limit.Limit)
	case errors.Is(err, store.ErrUnavailable):
		c.s.log.Warn("store unavailable", zap.String("doing", doing), zap.String("txn", c.txn), zap.Error(err))
		c.fault(http.StatusServiceUnavailable, api.FaultSystemFailure, "Service unavailable",
			"could not "+doing+": "+err.Error()+"; retry")
	default:
		c.s.log.Error("store failed", zap.String("doing", doing), zap.String("txn", c.txn), zap.Error(err))
		c.fault(http.StatusInternalServerError, api.FaultInternal, "Internal error", "could not "+doing+": storage failure")
	}
}

// json answers v as JSON with the status code.
func (c *call) json(code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		c.s.log.Error("encode response", zap.String("txn", c.txn), zap.Error(err))
		code = http.StatusInternalServerError
		body, _ = json.Marshal(api.Fault{Type: api.FaultInternal, Code: code, Message: "Internal error", TxnID: c.txn})
	}
	h := c.w.Header()
	// Keys are already canonical: skip Set's canonicalisation.
	h["Content-Type"] = []string{contentTypeJSON}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	c.w.WriteHeader(code)
	_, _ = c.w.Write(body)
}

// noContent answers 204.
func (c *call) noContent() { c.w.WriteHeader(http.StatusNoContent) }

// updated answers 204 with the Location of the updated object, as the
// hosted service did: the Node.js client reads it from this reply.
func (c *call) updated(location string) {
	c.w.Header().Set("Location", location)
	c.noContent()
}

// created answers 201 with Location and body v (nil: an empty body).
func (c *call) created(location string, v any) {
	c.w.Header().Set("Location", location)
	if v != nil {
		c.json(http.StatusCreated, v)
		return
	}
	c.w.Header().Set("Content-Length", "0")
	c.w.WriteHeader(http.StatusCreated)
}

// decode reads the JSON body into v (see unmarshal). It answers the fault
// and returns false when the body is unusable.
func (c *call) decode(v any) bool {
	body, ok := c.body()
	return ok && c.unmarshal(body, v)
}

// unmarshal decodes the JSON body into v. An empty body decodes as {},
// leaving v as it is. It answers the fault and returns false when the
// body is not JSON of v's shape.
func (c *call) unmarshal(body []byte, v any) bool {
	if len(bytes.TrimSpace(body)) == 0 {
		return true
	}
	if err := json.Unmarshal(body, v); err != nil {
		c.fault(http.StatusBadRequest, api.FaultBadRequest, "Invalid request body", describeJSONError(err))
		return false
	}
	return true
}

// body reads the request body within the size limit, answering the fault
// and returning false when it cannot.
func (c *call) body() ([]byte, bool) {
	var body []byte
	var err error
	switch n := c.r.ContentLength; {
	case n >= 0:
		// Within the limit (serveHTTP answers larger ones). The usual
		// case (heartbeats): read exactly the announced length instead of
		// growing a buffer.
		body = make([]byte, n)
		_, err = io.ReadFull(c.r.Body, body)
	default:
		body, err = io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, c.s.maxBody))
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			c.tooLarge()
			return nil, false
		}
		c.fault(http.StatusBadRequest, api.FaultBadRequest, "Could not read the request body", err.Error())
		return nil, false
	}
	return body, true
}

// tooLarge answers 413 to a body over the limit (see lingeringFault).
func (c *call) tooLarge() {
	c.lingeringFault(http.StatusRequestEntityTooLarge, api.FaultRequestTooLarge, "Request body too large",
		fmt.Sprintf("the body may be at most %d bytes", c.s.maxBody))
}

// lingeringFault answers a fault to a request whose body is still coming
// (over the limit, or chunked and refused before it was read) and closes
// the connection after a lingering read of the rest of the body
// (lingerBytes at most, for lingerTime at most), as nginx's lingering
// close does. Clients such as Python's urllib and requests send the whole
// body before they read: closing with their data unread would send them a
// TCP reset, which destroys the fault in their receive buffer, and they
// would report "connection reset by peer" instead. A client that asked
// for "100-continue" has not sent the body and gets the fault alone.
func (c *call) lingeringFault(code int, typ, message, details string) {
	rc := http.NewResponseController(c.w)
	// Reading the body after the reply is what full duplex allows;
	// without it net/http would give up on the body at once.
	fullDuplex := rc.EnableFullDuplex() == nil
	c.w.Header().Set("Connection", "close")
	c.json(code, api.Fault{Type: typ, Code: code, Message: message, Details: details, TxnID: c.txn})
	if !fullDuplex || strings.EqualFold(c.r.Header.Get("Expect"), "100-continue") {
		return
	}
	if rc.Flush() != nil || rc.SetReadDeadline(time.Now().Add(lingerTime)) != nil {
		return
	}
	_, _ = io.CopyN(io.Discard, c.r.Body, lingerBytes)
}

func describeJSONError(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d: %s", syntax.Offset, syntax.Error())
	case errors.As(err, &typ):
		if typ.Field == "" {
			return "the body must be a JSON object, got " + typ.Value
		}
		return fmt.Sprintf("%s must be %s, got %s", typ.Field, jsonTypeName(typ.Type), typ.Value)
	default:
		return err.Error()
	}
}

func jsonTypeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	default:
		return "a " + t.String()
	}
}

// baseURL is scheme://host of the request, for Location, next_href and the
// identity catalog.
func (c *call) baseURL() string {
	scheme := "http"
	if c.r.TLS != nil {
		scheme = "https"
	}
	if p := c.r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	host := c.r.Host
	if host == "" {
		if a, ok := c.r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			host = a.String()
		}
	}
	return scheme + "://" + host
}

// tenantURL is the absolute URL of a path below the tenant's base.
func (c *call) tenantURL(path string) string {
	return c.baseURL() + "/v1.0/" + c.tenant + path
}

// page is the pagination of a list request.
type page struct {
	limit  int
	marker string
	hasMk  bool
}

// pageParams reads limit and marker, answering invalidLimit when needed.
func (c *call) pageParams() (page, bool) {
	q := c.r.URL.Query()
	p := page{limit: api.DefaultListLimit}
	if vs, ok := q["limit"]; ok {
		v := ""
		if len(vs) > 0 {
			v = vs[0]
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > api.MaxListLimit {
			c.fault(http.StatusBadRequest, api.FaultInvalidLimit, "Invalid limit",
				fmt.Sprintf("limit must be an integer between 1 and %d, got %q", api.MaxListLimit, truncate(v)))
			return page{}, false
		}
		p.limit = n
	}
	if vs, ok := q["marker"]; ok && len(vs) > 0 {
		p.marker, p.hasMk = vs[0], true
	}
	return p, true
}

// paginate cuts one page out of items sorted by id. next is the id of the
// first item of the following page, or "".
func paginate[T any](items []T, id func(T) string, p page) (values []T, next string) {
	start := 0
	if p.hasMk {
		// Items are sorted: the page starts at the first id >= marker.
		lo, hi := 0, len(items)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if id(items[m]) < p.marker {
				lo = m + 1
			} else {
				hi = m
			}
		}
		start = lo
	}
	end := min(start+p.limit, len(items))
	values = items[start:end]
	if end < len(items) {
		next = id(items[end])
	}
	return values, next
}

// listReply answers one page of a list.
func listReply[T any](c *call, values []T, p page, next string) {
	if values == nil {
		values = []T{}
	}
	md := api.ListMetadata{Count: len(values), Limit: p.limit}
	if p.hasMk {
		m := p.marker
		md.Marker = &m
	}
	if next != "" {
		n := next
		md.NextMarker = &n
		q := c.r.URL.Query()
		q.Set("marker", next)
		q.Set("limit", strconv.Itoa(p.limit))
		href := c.baseURL() + (&url.URL{Path: c.r.URL.Path}).EscapedPath() + "?" + q.Encode()
		md.NextHref = &href
	}
	c.json(http.StatusOK, api.List[T]{Values: values, Metadata: md})
}

// truncate keeps echoed client input short.
func truncate(s string) string { return api.Truncate(s, 80) }

func quote(s string) string { return `"` + truncate(s) + `"` }

func sortByID[T any](items []T, id func(T) string) {
	sort.Slice(items, func(i, j int) bool { return id(items[i]) < id(items[j]) })
}

package server

import (
	"net/http"
	"strings"

	"github.com/sr-wrapper/sr-wrapper/internal/dashboard"
)

// route is a route of the server, by its pattern: the label of the
// requests histogram, so that ids and tenants never become label values.
type route uint8

const (
	routeUnmatched route = iota
	routeTokens
	routeSessions
	routeSession
	routeHeartbeat
	routeServices
	routeService
	routeConfiguration
	routeConfigNamespace
	routeConfigValue
	routeEvents
	routeLimits
	routeOverview
	routeHealthz
	routeReadyz
	routeMetrics
	routeRoot
	routeUI
	routeDashboard
	routeDashboardFile
	numRoutes
)

var routePatterns = [numRoutes]string{
	routeUnmatched:       "unmatched",
	routeTokens:          "/v2.0/tokens",
	routeSessions:        "/v1.0/{tenant}/sessions",
	routeSession:         "/v1.0/{tenant}/sessions/{id}",
	routeHeartbeat:       "/v1.0/{tenant}/sessions/{id}/heartbeat",
	routeServices:        "/v1.0/{tenant}/services",
	routeService:         "/v1.0/{tenant}/services/{id}",
	routeConfiguration:   "/v1.0/{tenant}/configuration",
	routeConfigNamespace: "/v1.0/{tenant}/configuration/{namespace}/",
	routeConfigValue:     "/v1.0/{tenant}/configuration/{id}",
	routeEvents:          "/v1.0/{tenant}/events",
	routeLimits:          "/v1.0/{tenant}/limits",
	routeOverview:        "/v1.0/{tenant}/views/overview",
	routeHealthz:         "/healthz",
	routeReadyz:          "/readyz",
	routeMetrics:         "/metrics",
	routeRoot:            "/",
	routeUI:              "/ui",
	routeDashboard:       dashboard.Path,
	routeDashboardFile:   dashboard.Path + "{file}",
}

// routeOf names the route that serveHTTP (and serveTenant) would take for
// path, whatever the method and whether or not the request authenticates:
// a 401 of a heartbeat counts as the heartbeat route. Paths that no route
// takes (the 404s of notFoundPath) are routeUnmatched. It follows the
// routing of http.go; FuzzRouteOfAgreesWithTheRouter holds the two
// together.
func routeOf(path string) route {
	switch {
	case path == "/v2.0/tokens" || path == "/v2.0/tokens/":
		return routeTokens
	case strings.HasPrefix(path, "/v1.0/"):
		return tenantRouteOf(path[len("/v1.0/"):])
	case path == "/healthz":
		return routeHealthz
	case path == "/readyz":
		return routeReadyz
	case path == "/metrics":
		return routeMetrics
	case path == "/":
		return routeRoot
	case path == "/ui":
		return routeUI
	case path == dashboard.Path:
		return routeDashboard
	case strings.HasPrefix(path, dashboard.Path):
		return routeDashboardFile
	}
	return routeUnmatched
}

// tenantRouteOf is routeOf of rest = the path after "/v1.0/".
func tenantRouteOf(rest string) route {
	tenant, rest, _ := strings.Cut(rest, "/")
	if tenant == "" {
		return routeUnmatched
	}
	resource, id, _ := strings.Cut(rest, "/")
	if resource == "configuration" {
		// See configurationID: the form of the id does not change what
		// it ends with, which is all that tells a namespace from a value.
		p := strings.TrimPrefix(strings.TrimPrefix(rest, "configuration"), "/")
		switch {
		case p == "" || p == "/":
			return routeConfiguration
		case strings.HasSuffix(p, "/"):
			return routeConfigNamespace
		}
		return routeConfigValue
	}
	id = strings.TrimSuffix(id, "/")
	switch resource {
	case "sessions":
		id, sub, _ := strings.Cut(id, "/")
		switch {
		case id == "" && sub == "":
			return routeSessions
		case sub == "":
			return routeSession
		case sub == "heartbeat" && id != "":
			return routeHeartbeat
		}
	case "services":
		switch {
		case id == "":
			return routeServices
		case !strings.Contains(id, "/"):
			return routeService
		}
	case "events":
		if id == "" {
			return routeEvents
		}
	case "limits":
		if id == "" {
			return routeLimits
		}
	case "views":
		if id == "overview" {
			return routeOverview
		}
	}
	return routeUnmatched
}

// method is a request method as a label: the standard ones, else other.
type method uint8

const (
	methodOther method = iota
	methodGet
	methodHead
	methodPost
	methodPut
	methodDelete
	methodPatch
	methodOptions
	numMethods
)

var methodNames = [numMethods]string{
	methodOther:   "other",
	methodGet:     http.MethodGet,
	methodHead:    http.MethodHead,
	methodPost:    http.MethodPost,
	methodPut:     http.MethodPut,
	methodDelete:  http.MethodDelete,
	methodPatch:   http.MethodPatch,
	methodOptions: http.MethodOptions,
}

func methodOf(m string) method {
	switch m {
	case http.MethodGet:
		return methodGet
	case http.MethodHead:
		return methodHead
	case http.MethodPost:
		return methodPost
	case http.MethodPut:
		return methodPut
	case http.MethodDelete:
		return methodDelete
	case http.MethodPatch:
		return methodPatch
	case http.MethodOptions:
		return methodOptions
	}
	return methodOther
}

package server

import (
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

func (s *Server) createService(c *call) {
	var req api.CreateServiceRequest
	if !c.decode(&req) {
		return
	}
	if !c.valid(
		api.ValidateServiceID(req.ID),
		api.ValidateSessionID(req.SessionID),
		api.ValidateTags(req.Tags),
		api.ValidateMetadata("metadata", req.Metadata),
	) {
		return
	}
	t := c.t
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.mu.Lock()
	sess := t.liveSession(req.SessionID)
	holder := t.services[req.ID]
	n := len(t.services)
	t.mu.Unlock()
	switch {
	case sess == nil:
		c.notFound("Session", req.SessionID)
		return
	case holder != nil:
		c.fault(http.StatusBadRequest, api.FaultServiceWithThisIDExists, "Service with this id already exists",
			fmt.Sprintf("service %q is registered by session %s; it is free again when that session is deleted or expires", req.ID, holder.sess.id))
		return
	case n >= s.limits.Service:
		c.limitReached("services", s.limits.Service)
		return
	}
	svc := &service{sess: sess, id: req.ID, tags: req.Tags, metadata: emptyToNil(req.Metadata)}
	view := svc.view()
	nowMS := time.Now().UnixMilli()
	err := s.store.commitTenant(c.r.Context(), t.id, func(tb *tenantBuckets) error {
		if err := putJSON(tb.services, view.ID, view); err != nil {
			return err
		}
		_, err := appendEvent(tb, api.EventServiceJoin, view, nowMS)
		return err
	})
	if err != nil {
		c.storeFailed("create the service", err)
		return
	}
	t.mu.Lock()
	t.services[svc.id] = svc
	sess.services = append(sess.services, svc)
	t.mu.Unlock()
	s.log.Debug("service created", zap.String("tenant", t.id), zap.String("service_id", svc.id), zap.String("session_id", sess.id))
	c.created(c.tenantURL("/services/"+svc.id), nil)
}

func (s *Server) getService(c *call, id string) {
	getOne(c, "Service", id, func(t *tenant) (api.Service, bool) {
		if svc := t.liveService(id); svc != nil {
			return svc.view(), true
		}
		return api.Service{}, false
	})
}

func (s *Server) listServices(c *call) {
	q := c.r.URL.Query()
	tag, byTag := q.Get("tag"), q.Has("tag")
	listOf(c, func(v api.Service) string { return v.ID }, func(t *tenant) []api.Service {
		all := make([]api.Service, 0, len(t.services))
		for _, svc := range t.services {
			if svc.live() && (!byTag || svc.hasTag(tag)) {
				all = append(all, svc.view())
			}
		}
		return all
	})
}

func (s *Server) updateService(c *call, id string) {
	var req api.UpdateServiceRequest
	if !c.decode(&req) {
		return
	}
	if !c.valid(api.ValidateTags(req.Tags), api.ValidateMetadata("metadata", req.Metadata)) {
		return
	}
	t := c.t
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.mu.Lock()
	svc := t.liveService(id)
	var next service
	if svc != nil {
		next = *svc
		if req.Tags != nil {
			next.tags = req.Tags
		}
		if req.Metadata != nil {
			next.metadata = emptyToNil(req.Metadata)
		}
	}
	t.mu.Unlock()
	if svc == nil {
		c.notFound("Service", id)
		return
	}
	view := next.view()
	err := s.store.commitTenant(c.r.Context(), t.id, func(tb *tenantBuckets) error {
		return putJSON(tb.services, id, view)
	})
	if err != nil {
		c.storeFailed("update the service", err)
		return
	}
	t.mu.Lock()
	svc.tags, svc.metadata = next.tags, next.metadata
	t.mu.Unlock()
	c.updated(c.tenantURL("/services/" + id))
}

func (s *Server) deleteService(c *call, id string) {
	t := c.t
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.mu.Lock()
	svc := t.liveService(id)
	t.mu.Unlock()
	if svc == nil {
		c.notFound("Service", id)
		return
	}
	err := s.store.commitTenant(c.r.Context(), t.id, func(tb *tenantBuckets) error {
		return tb.services.Delete([]byte(id))
	})
	if err != nil {
		c.storeFailed("delete the service", err)
		return
	}
	t.mu.Lock()
	delete(t.services, id)
	svc.sess.removeService(svc)
	t.mu.Unlock()
	c.noContent()
}

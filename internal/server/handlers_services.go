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
	t.mu.Lock()
	sess := t.liveSession(req.SessionID)
	holder := t.services[req.ID]
	n := len(t.services)
	fail := func() {}
	switch {
	case sess == nil:
		fail = func() { c.notFound("Session", req.SessionID) }
	case holder != nil:
		fail = func() {
			c.fault(http.StatusBadRequest, api.FaultServiceWithThisIDExists, "Service with this id already exists",
				fmt.Sprintf("service %q is registered by session %s; it is free again when that session is deleted or expires", req.ID, holder.sess.id))
		}
	case n >= s.limits.Service:
		fail = func() { c.limitReached("services", s.limits.Service) }
	default:
		fail = nil
	}
	if fail != nil {
		t.mu.Unlock()
		t.wmu.Unlock()
		fail()
		return
	}
	// Its id is taken and counted from now on; it is listed once on disk.
	svc := &service{sess: sess, id: req.ID, tags: req.Tags, metadata: emptyToNil(req.Metadata), pending: true}
	t.services[svc.id] = svc
	sess.services = append(sess.services, svc)
	view := svc.view()
	t.mu.Unlock()
	nowMS := time.Now().UnixMilli()
	p, err := s.store.enqueueTenant(c.r.Context(), t.id, func(tb *tenantBuckets) error {
		if err := putJSON(tb.services, view.ID, view); err != nil {
			return err
		}
		_, err := appendEvent(tb, api.EventServiceJoin, view, nowMS)
		return err
	})
	t.wmu.Unlock()
	if err == nil {
		err = p.wait()
	}
	t.mu.Lock()
	if err != nil {
		if t.services[svc.id] == svc {
			delete(t.services, svc.id)
		}
		sess.removeService(svc)
		t.mu.Unlock()
		c.storeFailed("create the service", err)
		return
	}
	svc.pending = false
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
	t.mu.Lock()
	svc := t.liveService(id)
	if svc == nil {
		t.mu.Unlock()
		t.wmu.Unlock()
		c.notFound("Service", id)
		return
	}
	// Applied at once, so that the next decision builds on this one.
	oldTags, oldMetadata := svc.tags, svc.metadata
	if req.Tags != nil {
		svc.tags = req.Tags
	}
	if req.Metadata != nil {
		svc.metadata = emptyToNil(req.Metadata)
	}
	svc.writes++
	mine := svc.writes
	view := svc.view()
	t.mu.Unlock()
	p, err := s.store.enqueueTenant(c.r.Context(), t.id, func(tb *tenantBuckets) error {
		return putJSON(tb.services, id, view)
	})
	t.wmu.Unlock()
	if err == nil {
		err = p.wait()
	}
	if err != nil {
		t.mu.Lock()
		if svc.writes == mine {
			// No later update built on this one: undo it.
			svc.tags, svc.metadata = oldTags, oldMetadata
		}
		t.mu.Unlock()
		c.storeFailed("update the service", err)
		return
	}
	c.noContent()
}

func (s *Server) deleteService(c *call, id string) {
	t := c.t
	t.wmu.Lock()
	t.mu.Lock()
	svc := t.liveService(id)
	if svc == nil {
		t.mu.Unlock()
		t.wmu.Unlock()
		c.notFound("Service", id)
		return
	}
	// Hidden at once; its id stays taken until the removal is on disk.
	svc.deleting = true
	t.mu.Unlock()
	p, err := s.store.enqueueTenant(c.r.Context(), t.id, func(tb *tenantBuckets) error {
		return tb.services.Delete([]byte(id))
	})
	t.wmu.Unlock()
	if err == nil {
		err = p.wait()
	}
	t.mu.Lock()
	if err != nil {
		svc.deleting = false
		t.mu.Unlock()
		c.storeFailed("delete the service", err)
		return
	}
	if t.services[id] == svc {
		delete(t.services, id)
	}
	svc.sess.removeService(svc)
	t.mu.Unlock()
	c.noContent()
}

package server

import (
	"slices"

	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
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
	tags := req.Tags
	if tags == nil {
		tags = []string{}
	}
	svc := api.Service{ID: req.ID, SessionID: req.SessionID, Tags: tags, Metadata: req.Metadata}
	if svc.Metadata == nil {
		svc.Metadata = map[string]string{}
	}
	if err := s.store.CreateService(c.r.Context(), c.tenant, svc); err != nil {
		// The only object a create can miss is the session.
		c.storeFault(err, "create the service", "Session", req.SessionID)
		return
	}
	s.log.Debug("service created", zap.String("tenant", c.tenant), zap.String("service_id", req.ID), zap.String("session_id", req.SessionID))
	c.created(c.tenantURL("/services/"+req.ID), nil)
}

func (s *Server) getService(c *call, id string) {
	v, err := s.store.Service(c.r.Context(), c.tenant, id)
	getOne(c, v, err, "Service", id)
}

func (s *Server) listServices(c *call) {
	q := c.r.URL.Query()
	tag, byTag := q.Get("tag"), q.Has("tag")
	all, err := s.store.Services(c.r.Context(), c.tenant)
	if byTag {
		kept := all[:0]
		for _, svc := range all {
			if slices.Contains(svc.Tags, tag) {
				kept = append(kept, svc)
			}
		}
		all = kept
	}
	listOf(c, all, err, "services", func(v api.Service) string { return v.ID })
}

func (s *Server) updateService(c *call, id string) {
	var req api.UpdateServiceRequest
	if !c.decode(&req) {
		return
	}
	if !c.valid(api.ValidateTags(req.Tags), api.ValidateMetadata("metadata", req.Metadata)) {
		return
	}
	if err := s.store.UpdateService(c.r.Context(), c.tenant, id, store.ServiceUpdate{Tags: req.Tags, Metadata: req.Metadata}); err != nil {
		c.storeFault(err, "update the service", "Service", id)
		return
	}
	c.updated(c.tenantURL("/services/" + id))
}

func (s *Server) deleteService(c *call, id string) {
	if err := s.store.DeleteService(c.r.Context(), c.tenant, id); err != nil {
		c.storeFault(err, "delete the service", "Service", id)
		return
	}
	c.noContent()
}

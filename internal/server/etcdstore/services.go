package etcdstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

// CreateService implements store.Store: one transaction puts the service,
// adds it to its session's definition, counts it and appends its
// service.join event.
func (s *Store) CreateService(ctx context.Context, tenant string, svc api.Service) error {
	defKey, svcKey := s.keys.session(tenant, svc.SessionID), s.keys.service(tenant, svc.ID)
	return s.mutate(ctx, tenant, &mutation{
		meta:  true,
		event: api.EventServiceJoin,
		keys:  func(reads) []string { return []string{defKey, svcKey} },
		decide: func(r reads, m *meta) ([]clientv3.Op, error) {
			var d definition
			if ok, err := r.decode(defKey, &d); !ok || err != nil {
				return nil, cmp(err, store.ErrNotFound)
			}
			var holder api.Service
			if ok, err := r.decode(svcKey, &holder); ok || err != nil {
				return nil, cmp(err, &store.ServiceExistsError{ID: svc.ID, SessionID: holder.SessionID})
			}
			if m.Services >= s.opts.Limits.Service {
				return nil, &store.LimitError{Resource: "services", Limit: s.opts.Limits.Service}
			}
			if len(d.Services) >= maxServicesPerSession {
				// A session's removal is one transaction, which etcd
				// bounds (--max-txn-ops, 128 by default).
				return nil, &store.LimitError{Resource: "services in one session (a session's removal is one etcd transaction)", Limit: maxServicesPerSession}
			}
			m.Services++
			ev, err := m.event(s.keys, tenant, api.EventServiceJoin, svc, time.Now())
			if err != nil {
				return nil, err
			}
			d.Services = append(d.Services, svc)
			slices.SortFunc(d.Services, func(a, b api.Service) int { return strings.Compare(a.ID, b.ID) })
			return []clientv3.Op{
				clientv3.OpPut(svcKey, encode(svc)),
				clientv3.OpPut(defKey, encode(d)),
				ev,
			}, nil
		},
	})
}

// Service implements store.Store.
func (s *Store) Service(ctx context.Context, tenant, id string) (api.Service, error) {
	resp, err := s.readTxn(ctx, fmt.Sprintf("read service %q", id), clientv3.OpGet(s.keys.service(tenant, id)))
	if err != nil {
		return api.Service{}, err
	}
	if len(resp[0]) == 0 {
		return api.Service{}, store.ErrNotFound
	}
	var svc api.Service
	return svc, decodeKV(resp[0][0], &svc)
}

// Services implements store.Store.
func (s *Store) Services(ctx context.Context, tenant string) ([]api.Service, error) {
	resp, err := s.readTxn(ctx, "list services", clientv3.OpGet(s.keys.services(tenant), clientv3.WithPrefix()))
	if err != nil {
		return nil, err
	}
	return decodeServices(resp[0])
}

func decodeServices(kvs []*mvccpb.KeyValue) ([]api.Service, error) {
	out := make([]api.Service, 0, len(kvs))
	for _, kv := range kvs {
		var svc api.Service
		if err := decodeKV(kv, &svc); err != nil {
			return nil, err
		}
		out = append(out, svc)
	}
	return out, nil
}

// UpdateService implements store.Store.
func (s *Store) UpdateService(ctx context.Context, tenant, id string, u store.ServiceUpdate) error {
	svcKey := s.keys.service(tenant, id)
	return s.mutate(ctx, tenant, &mutation{
		keys: s.serviceKeys(tenant, svcKey),
		decide: func(r reads, _ *meta) ([]clientv3.Op, error) {
			var svc api.Service
			if ok, err := r.decode(svcKey, &svc); !ok || err != nil {
				return nil, cmp(err, store.ErrNotFound)
			}
			if u.Tags != nil {
				svc.Tags = u.Tags
			}
			if u.Metadata != nil {
				svc.Metadata = u.Metadata
			}
			ops := []clientv3.Op{clientv3.OpPut(svcKey, encode(svc))}
			defKey := s.keys.session(tenant, svc.SessionID)
			var d definition
			if ok, err := r.decode(defKey, &d); err != nil {
				return nil, err
			} else if ok {
				for i := range d.Services {
					if d.Services[i].ID == id {
						d.Services[i] = svc
					}
				}
				ops = append(ops, clientv3.OpPut(defKey, encode(d)))
			}
			return ops, nil
		},
	})
}

// serviceKeys are the keys a change of a service depends on: the service
// and its session's definition.
func (s *Store) serviceKeys(tenant, svcKey string) func(reads) []string {
	return func(r reads) []string {
		ks := []string{svcKey}
		var svc api.Service
		if ok, _ := r.decode(svcKey, &svc); ok {
			ks = append(ks, s.keys.session(tenant, svc.SessionID))
		}
		return ks
	}
}

// DeleteService implements store.Store: the service goes, and out of its
// session's definition, in one transaction.
func (s *Store) DeleteService(ctx context.Context, tenant, id string) error {
	svcKey := s.keys.service(tenant, id)
	return s.mutate(ctx, tenant, &mutation{
		meta: true,
		keys: s.serviceKeys(tenant, svcKey),
		decide: func(r reads, m *meta) ([]clientv3.Op, error) {
			var svc api.Service
			if ok, err := r.decode(svcKey, &svc); !ok || err != nil {
				return nil, cmp(err, store.ErrNotFound)
			}
			m.Services--
			ops := []clientv3.Op{clientv3.OpDelete(svcKey)}
			defKey := s.keys.session(tenant, svc.SessionID)
			var d definition
			if ok, err := r.decode(defKey, &d); err != nil {
				return nil, err
			} else if ok {
				d.Services = slices.DeleteFunc(d.Services, func(x api.Service) bool { return x.ID == id })
				ops = append(ops, clientv3.OpPut(defKey, encode(d)))
			}
			return ops, nil
		},
	})
}

// ConfigValue implements store.Store.
func (s *Store) ConfigValue(ctx context.Context, tenant, id string) (api.ConfigurationValue, error) {
	resp, err := s.readTxn(ctx, fmt.Sprintf("read configuration value %q", id), clientv3.OpGet(s.keys.config(tenant, id)))
	if err != nil {
		return api.ConfigurationValue{}, err
	}
	if len(resp[0]) == 0 {
		return api.ConfigurationValue{}, store.ErrNotFound
	}
	return api.ConfigurationValue{ID: id, Value: string(resp[0][0].Value)}, nil
}

// ConfigValues implements store.Store.
func (s *Store) ConfigValues(ctx context.Context, tenant, prefix string) ([]api.ConfigurationValue, error) {
	base := s.keys.configs(tenant)
	resp, err := s.readTxn(ctx, "list configuration values", clientv3.OpGet(base+prefix, clientv3.WithPrefix()))
	if err != nil {
		return nil, err
	}
	out := make([]api.ConfigurationValue, 0, len(resp[0]))
	for _, kv := range resp[0] {
		out = append(out, api.ConfigurationValue{ID: strings.TrimPrefix(string(kv.Key), base), Value: string(kv.Value)})
	}
	return out, nil
}

// SetConfigValue implements store.Store.
func (s *Store) SetConfigValue(ctx context.Context, tenant, id, value string) error {
	key := s.keys.config(tenant, id)
	return s.mutate(ctx, tenant, &mutation{
		meta:  true,
		event: api.EventConfigurationUpdate,
		keys:  func(reads) []string { return []string{key} },
		decide: func(r reads, m *meta) ([]clientv3.Op, error) {
			change := api.ConfigurationChange{ConfigurationValueID: id, NewValue: &value}
			if r.present(key) {
				old := string(r.value(key))
				change.OldValue = &old
			} else {
				if m.Config >= s.opts.Limits.ConfigurationValue {
					return nil, &store.LimitError{Resource: "configuration values", Limit: s.opts.Limits.ConfigurationValue}
				}
				m.Config++
			}
			ev, err := m.event(s.keys, tenant, api.EventConfigurationUpdate, change, time.Now())
			if err != nil {
				return nil, err
			}
			return []clientv3.Op{clientv3.OpPut(key, value), ev}, nil
		},
	})
}

// DeleteConfigValue implements store.Store.
func (s *Store) DeleteConfigValue(ctx context.Context, tenant, id string) error {
	key := s.keys.config(tenant, id)
	return s.mutate(ctx, tenant, &mutation{
		meta:  true,
		event: api.EventConfigurationRemove,
		keys:  func(reads) []string { return []string{key} },
		decide: func(r reads, m *meta) ([]clientv3.Op, error) {
			if !r.present(key) {
				return nil, store.ErrNotFound
			}
			old := string(r.value(key))
			m.Config--
			ev, err := m.event(s.keys, tenant, api.EventConfigurationRemove, api.ConfigurationChange{ConfigurationValueID: id, OldValue: &old}, time.Now())
			if err != nil {
				return nil, err
			}
			return []clientv3.Op{clientv3.OpDelete(key), ev}, nil
		},
	})
}

// Events implements store.Store: one range read from the key of from, in
// key order, which is id order, which is commit order.
func (s *Store) Events(ctx context.Context, tenant, from string, limit int) ([]api.Event, error) {
	base := s.keys.events(tenant)
	resp, err := s.readTxn(ctx, "read events",
		clientv3.OpGet(base+from, clientv3.WithRange(clientv3.GetPrefixRangeEnd(base)), clientv3.WithLimit(int64(limit)+1)))
	if err != nil {
		return nil, err
	}
	out := make([]api.Event, 0, len(resp[0]))
	for _, kv := range resp[0] {
		var ev api.Event
		if err := decodeKV(kv, &ev); err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

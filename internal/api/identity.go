package api

// AuthRequest is the body of POST {authUrl}/v2.0/tokens with Rackspace's
// API-key credentials.
type AuthRequest struct {
	Auth AuthCredentials `json:"auth"`
}

// AuthCredentials wraps the API-key credentials.
type AuthCredentials struct {
	APIKeyCredentials *APIKeyCredentials `json:"RAX-KSKEY:apiKeyCredentials"`
}

// APIKeyCredentials are a username and API key.
type APIKeyCredentials struct {
	Username string `json:"username"`
	APIKey   string `json:"apiKey"`
}

// AuthResponse is the identity service's reply.
type AuthResponse struct {
	Access Access `json:"access"`
}

// Access holds the issued token, the user and the service catalog.
type Access struct {
	Token          Token          `json:"token"`
	User           User           `json:"user"`
	ServiceCatalog []CatalogEntry `json:"serviceCatalog"`
}

// Token is an issued identity token. Expires is ISO 8601.
type Token struct {
	ID      string `json:"id"`
	Expires string `json:"expires"`
	Tenant  Tenant `json:"tenant"`
}

// Tenant names the account a token belongs to.
type Tenant struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// User describes the authenticated user.
type User struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Roles []Role `json:"roles"`
}

// Role is one role of a user.
type Role struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// CatalogEntry is one service of the catalog.
type CatalogEntry struct {
	Name      string     `json:"name"`
	Type      string     `json:"type"`
	Endpoints []Endpoint `json:"endpoints"`
}

// Endpoint is one endpoint of a catalog entry.
type Endpoint struct {
	TenantID  string `json:"tenantId"`
	PublicURL string `json:"publicURL"`
	Region    string `json:"region,omitempty"`
}

// Catalog entries: the two compute entries that old clients read the tenant
// id from, and the registry's own entry.
//
// keystone-client 0.3.0, under the 2013 Node.js client, reads the tenant
// from endpoints[0].tenantId of the last entry named cloudServers or
// cloudServersLegacy (0.3.1 also takes cloudServersOpenStack). libcloud's
// Rackspace driver, under the Python client, takes the entry of type
// compute named cloudServers whose endpoint has no region, and the tenant
// as the last path segment of its publicURL.
const (
	CatalogLegacyComputeName = "cloudServers"
	CatalogComputeName       = "cloudServersOpenStack"
	CatalogRegistryName      = "cloudServiceRegistry"
	CatalogRegistryType      = "rax:registry"
)

// TenantID returns the tenant the response is for: the token's tenant, or
// else the first compute entry of the catalog, as old clients read it.
func (r *AuthResponse) TenantID() string {
	if r.Access.Token.Tenant.ID != "" {
		return r.Access.Token.Tenant.ID
	}
	for _, e := range r.Access.ServiceCatalog {
		switch e.Name {
		case CatalogLegacyComputeName, "cloudServersLegacy", CatalogComputeName:
			if len(e.Endpoints) > 0 && e.Endpoints[0].TenantID != "" {
				return e.Endpoints[0].TenantID
			}
		}
	}
	return ""
}

package console

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/patchfleet/patchfleet/tools/console/auth"
)

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

func pathEscape(s string) string { return url.PathEscape(s) }

// localPath keeps a post-login redirect on this site.
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.ContainsAny(next, "\r\n") {
		return "/"
	}
	return next
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.session(r); ok {
		http.Redirect(w, r, localPath(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	s.render(w, http.StatusOK, "login", pageData{Title: "Sign in", Data: localPath(r.URL.Query().Get("next"))})
}

// login exchanges a token for a session. The token is never logged or echoed.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	next := localPath(r.PostFormValue("next"))
	name, ok := s.cfg.Tokens.Lookup(r.PostFormValue("token"))
	if !ok {
		s.log.Warn("console sign-in refused", "remote", r.RemoteAddr)
		s.render(w, http.StatusUnauthorized, "login", pageData{Title: "Sign in", Error: "That token is not valid.", Data: next})
		return
	}
	if old, ok := s.session(r); ok {
		s.sessions.Delete(old.ID) // a new sign-in gets a new id
	}
	sess := s.sessions.Create(name)
	http.SetCookie(w, s.cookie(r, sess.ID, int(s.cfg.SessionTTL.Seconds())))
	s.log.Info("console sign-in", "user", name, "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, sess auth.Session) {
	s.sessions.Delete(sess.ID)
	http.SetCookie(w, s.cookie(r, "", -1))
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// cookie is the session cookie: HttpOnly, SameSite=Strict, Secure on TLS.
func (s *Server) cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: cookieName, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true,
		Secure: r.TLS != nil || s.cfg.SecureCookies, SameSite: http.SameSiteStrictMode}
}

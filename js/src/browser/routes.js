// How the page reaches the vdbnb server. "direct": the kernel's server URL (api_url), when this browser can
// reach it (the server runs on this machine); "jupyter": through the Jupyter server that serves this page
// (vdbnb/widgets/ingest_proxy.py), when the kernel and its server run elsewhere. Both carry the same
// recorder calls with the same client token; the Jupyter route adds this page's Jupyter login.

function jupyterPage() {
  const el = document.getElementById("jupyter-config-data");
  if (!el) return null;
  try {
    const c = JSON.parse(el.textContent);
    return { baseUrl: c.baseUrl || "/", token: c.token || "" };
  } catch (e) {
    return null;
  }
}

function cookie(name) {
  const m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
  return m ? decodeURIComponent(m[1]) : "";
}

function wsUrl(httpUrl) {
  return httpUrl.replace(/^http/, "ws");
}

export function routes(cfg) {
  const out = [];
  const direct = {
    name: "direct",
    rest: cfg.api_url.replace(/\/$/, ""),
    headers: () => ({ "x-access-token": cfg.token }),
    // no token in the URL (access logs): the first message carries it (docs/ingest.md)
    socket: (sid) => `${wsUrl(cfg.api_url.replace(/\/$/, ""))}/capture/session/${sid}/ingest`,
    auth: () => JSON.stringify({ type: "auth", token: cfg.token }),
    fetchOpts: { mode: "cors", credentials: "omit" },
  };
  const page = jupyterPage();
  let jupyter = null;
  if (page && cfg.proxy_path) {
    const base = new URL(page.baseUrl.replace(/\/?$/, "/") + cfg.proxy_path, location.origin).href.replace(/\/$/, "");
    jupyter = {
      name: "jupyter",
      rest: base,
      headers: () => {
        const h = { "x-access-token": cfg.token };
        if (page.token) h.Authorization = `token ${page.token}`;
        const x = cookie("_xsrf");
        if (x) h["X-XSRFToken"] = x;
        return h;
      },
      // Jupyter's log scrubs *token* query values; the proxy passes the client token on as a header
      socket: (sid) => `${wsUrl(base)}/capture/session/${sid}/ingest?access_token=${encodeURIComponent(cfg.token)}`
        + (page.token ? `&token=${encodeURIComponent(page.token)}` : ""),
      auth: null,
      fetchOpts: { credentials: "same-origin" },
    };
  }
  if (cfg.reach !== "proxy") out.push(direct);
  if (cfg.reach !== "direct" && jupyter) out.push(jupyter);
  return out;
}

export async function call(route, method, path, body, timeoutMs = 15000) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  try {
    const headers = route.headers();
    if (body !== undefined) headers["content-type"] = "application/json";
    const r = await fetch(route.rest + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: ctl.signal,
      ...route.fetchOpts,
    });
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    return { status: r.status, data: data && data.data !== undefined ? data.data : data, body: data };
  } finally {
    clearTimeout(timer);
  }
}

// The first route on which R2 (GET capture/session/{sid}) answers for this session with this token: it
// proves the route leads to the kernel's server (another vdbnb on this machine would not know the session).
export async function pickRoute(cfg) {
  const tried = [];
  let refused = 0;
  const all = routes(cfg);
  for (const route of all) {
    try {
      const r = await call(route, "GET", `/capture/session/${cfg.session_id}`, undefined, 4000);
      if (r.status === 200) return { route, tried, session: r.data };
      tried.push(`${route.name}: HTTP ${r.status}${r.body && r.body.message ? " " + r.body.message : ""}`);
      if (r.status === 401) refused += 1;
    } catch (e) {
      tried.push(`${route.name}: ${e.name === "AbortError" ? "no answer in 4 s" : e.message}`);
    }
  }
  // every route answered but refused the token: it expired (or was revoked), a fresh one is needed
  return { route: null, tried, auth: all.length > 0 && refused === all.length };
}

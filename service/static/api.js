// Calls to the sslzoo JSON API, and the sentences people read when one fails.
// Every error the service returns is JSON {error, type, status}; explain() turns it into a headline that
// says what to do, followed by the server's own message (which names the exact limit or item).

export class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

async function parse(response) {
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!response.ok) {
    const message = body && typeof body.error === "string" ? body.error
      : body && body.error && body.error.message ? body.error.message
      : `HTTP ${response.status}${text ? ": " + text.slice(0, 200) : ""}`;
    throw new ApiError(response.status, body && body.type ? body.type : "http_error", message);
  }
  return body;
}

export async function getJson(path) {
  let response;
  try { response = await fetch(path, { headers: { Accept: "application/json" } }); }
  catch (err) { throw new ApiError(0, "network", String(err && err.message ? err.message : err)); }
  return parse(response);
}

export async function postJson(path, body, apiKey) {
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  let response;
  try { response = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) }); }
  catch (err) { throw new ApiError(0, "network", String(err && err.message ? err.message : err)); }
  return parse(response);
}

// A headline per kind of failure; the server's message follows it.
export function explain(err) {
  if (!(err instanceof ApiError)) return { headline: "Something went wrong in the page.", detail: String(err) };
  const m = err.message || "";
  if (err.status === 0) {
    return { headline: "Cannot reach the server. Is it still running?", detail: m };
  }
  if (err.status === 400 && /not a recognised image format|corrupt or truncated|not valid base64|empty image/i.test(m)) {
    return { headline: "This file is not an image the server can read (PNG, JPEG, GIF, WebP, BMP…).", detail: m };
  }
  if (err.status === 400 && /too small/i.test(m)) {
    return { headline: "This image is too small to mean anything to the model.", detail: m };
  }
  if (err.status === 400 && /no text tower|needs a CLIP model/i.test(m)) {
    return { headline: "This model has no text tower: text search and zero-shot labels need a CLIP model.", detail: m };
  }
  if (err.status === 401) {
    return { headline: "Unauthorised: this server needs its API key to add to an index. Type it in the “API key” field.", detail: m };
  }
  if (err.status === 404 && /no index named/i.test(m)) {
    return { headline: "No such index. Pick one from the list, or add an image to create it.", detail: m };
  }
  if (err.status === 404) return { headline: "Not found.", detail: m };
  if (err.status === 409) {
    return { headline: "This index holds another model's embeddings. Choose the index's own model (or another index).", detail: m };
  }
  if (err.status === 413) return { headline: "Too large for this server.", detail: m };
  if (err.status === 415) return { headline: "The server refused the request's format.", detail: m };
  if (err.status >= 500) return { headline: "The server failed on this request; its log has the details.", detail: m };
  return { headline: "The server refused the request.", detail: m };
}

// Show (or, with null, hide) a message in a role="alert" paragraph.
export function showError(element, err) {
  if (!err) {
    element.hidden = true;
    element.textContent = "";
    delete element.dataset.status;
    return;
  }
  const { headline, detail } = explain(err);
  element.replaceChildren();
  const strong = document.createElement("strong");
  strong.textContent = headline;
  element.append(strong);
  if (detail) element.append(document.createTextNode(detail));
  element.dataset.status = err instanceof ApiError ? String(err.status) : "page";
  element.hidden = false;
}

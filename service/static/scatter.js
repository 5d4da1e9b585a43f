// A zoomable, pannable canvas scatter with hover (or keyboard) tooltips and a marked query point.
// Data coordinates are fitted to the canvas once per data set; zoom and pan act on top of that fit.

export const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d",
  "#9edae5", "#393b79"];
export const MISSING = "#b0b6c0";
const PAD = 24;
const HIT_RADIUS = 10;

function escapeText(text) {
  const span = document.createElement("span");
  span.textContent = text;
  return span;
}

export class Scatter {
  constructor(canvas, tooltip, thumbnailOf) {
    this.canvas = canvas;
    this.tooltip = tooltip;
    this.thumbnailOf = thumbnailOf;
    this.points = null;
    this.colours = [];
    this.query = null;
    this.k = 1;
    this.tx = 0;
    this.ty = 0;
    this.focus = -1;
    this.drag = null;
    this.bind();
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  setData(points, colours, query) {
    this.points = points;
    this.colours = colours;
    this.query = query;
    this.focus = -1;
    const xs = points.x.concat(query ? [query.x] : []);
    const ys = points.y.concat(query ? [query.y] : []);
    this.bounds = { x0: Math.min(...xs), x1: Math.max(...xs), y0: Math.min(...ys), y1: Math.max(...ys) };
    this.canvas.dataset.points = String(points.ids.length);
    if (query) this.canvas.dataset.query = `${query.x},${query.y}`;
    else delete this.canvas.dataset.query;
    this.reset();
  }

  setColours(colours) { this.colours = colours; this.draw(); }

  reset() { this.k = 1; this.tx = 0; this.ty = 0; this.hideTip(); this.draw(); }

  // data → CSS pixels
  toScreen(x, y) {
    const { width, height } = this.canvas.getBoundingClientRect();
    const b = this.bounds;
    const sx = (width - 2 * PAD) / Math.max(b.x1 - b.x0, 1e-9);
    const sy = (height - 2 * PAD) / Math.max(b.y1 - b.y0, 1e-9);
    const s = Math.min(sx, sy);
    const cx = width / 2 + (x - (b.x0 + b.x1) / 2) * s;
    const cy = height / 2 - (y - (b.y0 + b.y1) / 2) * s;
    return [(cx - width / 2) * this.k + width / 2 + this.tx, (cy - height / 2) * this.k + height / 2 + this.ty];
  }

  draw() {
    const canvas = this.canvas;
    const rect = canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.round(rect.width * dpr));
    canvas.height = Math.max(1, Math.round(rect.height * dpr));
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, rect.width, rect.height);
    if (!this.points) return;
    const r = Math.max(2.5, Math.min(6, 3 * Math.sqrt(this.k)));
    const { ids, x, y } = this.points;
    for (let i = 0; i < ids.length; i += 1) {
      const [px, py] = this.toScreen(x[i], y[i]);
      if (px < -r || py < -r || px > rect.width + r || py > rect.height + r) continue;
      ctx.beginPath();
      ctx.arc(px, py, r, 0, 2 * Math.PI);
      ctx.fillStyle = this.colours[i] || MISSING;
      ctx.globalAlpha = 0.85;
      ctx.fill();
      ctx.strokeStyle = "rgba(29, 35, 48, 0.45)"; // keeps light colours (yellow, pale palette entries) visible
      ctx.lineWidth = 0.6;
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
    if (this.focus >= 0) {
      const [px, py] = this.toScreen(x[this.focus], y[this.focus]);
      ctx.beginPath();
      ctx.arc(px, py, r + 4, 0, 2 * Math.PI);
      ctx.strokeStyle = "#1d2330";
      ctx.lineWidth = 2;
      ctx.stroke();
    }
    if (this.query) this.drawStar(ctx, ...this.toScreen(this.query.x, this.query.y));
  }

  drawStar(ctx, cx, cy) {
    const spikes = 5;
    const outer = 11;
    const inner = 4.5;
    ctx.beginPath();
    for (let i = 0; i < spikes * 2; i += 1) {
      const radius = i % 2 === 0 ? outer : inner;
      const angle = (Math.PI / spikes) * i - Math.PI / 2;
      ctx.lineTo(cx + Math.cos(angle) * radius, cy + Math.sin(angle) * radius);
    }
    ctx.closePath();
    ctx.fillStyle = "#d62728";
    ctx.strokeStyle = "#ffffff";
    ctx.lineWidth = 2;
    ctx.stroke();
    ctx.fill();
  }

  zoomAt(factor, cx, cy) {
    const k = Math.min(200, Math.max(0.5, this.k * factor));
    const f = k / this.k;
    const { width, height } = this.canvas.getBoundingClientRect();
    // keep the data point under (cx, cy) fixed
    this.tx = (cx - width / 2) - ((cx - width / 2) - this.tx) * f;
    this.ty = (cy - height / 2) - ((cy - height / 2) - this.ty) * f;
    this.k = k;
    this.hideTip();
    this.draw();
  }

  zoomCentre(factor) {
    const { width, height } = this.canvas.getBoundingClientRect();
    this.zoomAt(factor, width / 2, height / 2);
  }

  pan(dx, dy) { this.tx += dx; this.ty += dy; this.hideTip(); this.draw(); }

  nearest(px, py) {
    if (!this.points) return -1;
    let best = -1;
    let bestD = HIT_RADIUS * HIT_RADIUS;
    const { x, y } = this.points;
    for (let i = 0; i < x.length; i += 1) {
      const [sx, sy] = this.toScreen(x[i], y[i]);
      const d = (sx - px) ** 2 + (sy - py) ** 2;
      if (d <= bestD) { bestD = d; best = i; }
    }
    return best;
  }

  showTip(i) {
    const tip = this.tooltip;
    const id = this.points.ids[i];
    const meta = this.points.metadata[i] || {};
    const [px, py] = this.toScreen(this.points.x[i], this.points.y[i]);
    tip.replaceChildren();
    tip.dataset.id = id;
    const img = document.createElement("img");
    img.alt = `Thumbnail of ${id}`;
    img.hidden = true;
    tip.append(img);
    const title = document.createElement("strong");
    title.append(escapeText(id));
    tip.append(title);
    for (const [key, value] of Object.entries(meta).slice(0, 5)) {
      const line = document.createElement("div");
      line.append(escapeText(`${key}: ${typeof value === "object" ? JSON.stringify(value) : value}`));
      tip.append(line);
    }
    tip.hidden = false;
    const { width, height } = this.canvas.getBoundingClientRect();
    const left = Math.min(Math.max(4, px + 12), Math.max(4, width - tip.offsetWidth - 4));
    const top = py + 12 + tip.offsetHeight > height ? Math.max(4, py - tip.offsetHeight - 12) : py + 12;
    tip.style.left = `${left}px`;
    tip.style.top = `${top}px`;
    this.thumbnailOf(id).then((uri) => {
      if (uri && tip.dataset.id === id && !tip.hidden) { img.src = uri; img.hidden = false; }
    });
  }

  hideTip() { this.tooltip.hidden = true; delete this.tooltip.dataset.id; }

  step(delta) {
    if (!this.points || !this.points.ids.length) return;
    const n = this.points.ids.length;
    this.focus = this.focus < 0 ? (delta > 0 ? 0 : n - 1) : (this.focus + delta + n) % n;
    const [px, py] = this.toScreen(this.points.x[this.focus], this.points.y[this.focus]);
    const { width, height } = this.canvas.getBoundingClientRect();
    if (px < 0 || py < 0 || px > width || py > height) { this.tx += width / 2 - px; this.ty += height / 2 - py; }
    this.draw();
    this.showTip(this.focus);
  }

  bind() {
    const c = this.canvas;
    const local = (e) => { const r = c.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
    c.addEventListener("wheel", (e) => {
      if (!this.points) return;
      e.preventDefault();
      this.zoomAt(e.deltaY < 0 ? 1.2 : 1 / 1.2, ...local(e));
    }, { passive: false });
    c.addEventListener("pointerdown", (e) => { this.drag = local(e); c.setPointerCapture(e.pointerId); });
    c.addEventListener("pointerup", () => { this.drag = null; });
    c.addEventListener("pointerleave", () => { if (!this.drag) this.hideTip(); });
    c.addEventListener("pointermove", (e) => {
      const [px, py] = local(e);
      if (this.drag) { this.pan(px - this.drag[0], py - this.drag[1]); this.drag = [px, py]; return; }
      const i = this.nearest(px, py);
      if (i >= 0) this.showTip(i); else this.hideTip();
    });
    c.addEventListener("keydown", (e) => {
      if (!this.points) return;
      const keys = {
        "+": () => this.zoomCentre(1.25), "=": () => this.zoomCentre(1.25), "-": () => this.zoomCentre(0.8),
        "0": () => this.reset(), ArrowLeft: () => this.pan(40, 0), ArrowRight: () => this.pan(-40, 0),
        ArrowUp: () => this.pan(0, 40), ArrowDown: () => this.pan(0, -40), n: () => this.step(1),
        N: () => this.step(1), p: () => this.step(-1), P: () => this.step(-1), Escape: () => this.hideTip(),
      };
      if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
    });
  }
}

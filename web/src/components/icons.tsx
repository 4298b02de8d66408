// A few inline icons (no icon font, nothing fetched).
const base = { width: 16, height: 16, viewBox: "0 0 24 24", fill: "none", stroke: "currentColor", strokeWidth: 2, strokeLinecap: "round", strokeLinejoin: "round", "aria-hidden": true } as const;

export const IconPlay = () => (
  <svg {...base}>
    <polygon points="6 4 20 12 6 20 6 4" />
  </svg>
);
export const IconStop = () => (
  <svg {...base}>
    <rect x="6" y="6" width="12" height="12" rx="1" />
  </svg>
);
export const IconRestart = () => (
  <svg {...base}>
    <path d="M3 12a9 9 0 1 0 3-6.7" />
    <polyline points="3 3 3 9 9 9" />
  </svg>
);
export const IconSun = () => (
  <svg {...base}>
    <circle cx="12" cy="12" r="4" />
    <path d="M12 2v2M12 20v2M4.9 4.9l1.4 1.4M17.7 17.7l1.4 1.4M2 12h2M20 12h2M4.9 19.1l1.4-1.4M17.7 6.3l1.4-1.4" />
  </svg>
);
export const IconMoon = () => (
  <svg {...base}>
    <path d="M21 12.8A9 9 0 1 1 11.2 3a7 7 0 0 0 9.8 9.8z" />
  </svg>
);
export const IconClose = () => (
  <svg {...base}>
    <path d="M18 6 6 18M6 6l12 12" />
  </svg>
);
export const IconSearch = () => (
  <svg {...base}>
    <circle cx="11" cy="11" r="7" />
    <path d="m20 20-3.5-3.5" />
  </svg>
);
export const IconBolt = () => (
  <svg {...base}>
    <path d="M13 2 3 14h9l-1 8 10-12h-9l1-8z" />
  </svg>
);
export const IconFault = () => (
  <svg {...base}>
    <path d="M10.3 3.9 1.8 18a2 2 0 0 0 1.7 3h17a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0z" />
    <path d="M12 9v4M12 17h.01" />
  </svg>
);
export const IconLogo = () => (
  <svg width="22" height="22" viewBox="0 0 24 24" aria-hidden="true">
    <rect x="3" y="3" width="18" height="5" rx="1.5" fill="currentColor" opacity="0.95" />
    <rect x="3" y="9.5" width="18" height="5" rx="1.5" fill="currentColor" opacity="0.7" />
    <rect x="3" y="16" width="18" height="5" rx="1.5" fill="currentColor" opacity="0.45" />
    <circle cx="6.5" cy="5.5" r="1" fill="var(--bg)" />
    <circle cx="6.5" cy="12" r="1" fill="var(--bg)" />
    <circle cx="6.5" cy="18.5" r="1" fill="var(--bg)" />
  </svg>
);

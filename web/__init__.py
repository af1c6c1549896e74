"""The bundled page and the JS SDK (``parley.js``, ``parley.d.ts``), shipped in the wheel as package data."""

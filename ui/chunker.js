// FastCDC 2020, cut for cut as depot's server does it (the Rust crate
// `fastcdc` 3.2.1, module v2020, normalisation level 1, gear table with
// seed 0) and as the Python client's port (clients/python/depot_client/
// fastcdc.py) does it; tests/interop/chunker.test.mjs checks it against the
// golden vectors that port is checked against.
//
// The rolling hash is the plain gear recurrence H = (H << 1) + GEAR[byte]
// (mod 2^64), started at 0 on the byte at offset floor(min / 2) * 2 of each
// chunk; a chunk ends before the first position whose H has no bit of
// mask_s in common (before the normal size avg), then of mask_l (after it),
// or at max bytes. 64-bit values are kept as two 32-bit halves: plain
// numbers are exact to 53 bits only and BigInt is far too slow per byte.
//
// Works as a classic script (window / worker: sets `DepotChunker`) and as a
// CommonJS module (Node: module.exports).
(function (root) {
  'use strict';

  // The crate's GEAR table (seed 0): the high 8 bytes of MD5(0..255).
  const GEAR = [
    '3b5d3c7d207e37dc', '784d68ba91123086', 'cd52880f882e7298', 'eacf8e4e19fdcca7',
    'c31f385dfbd1632b', '1d5f27001e25abe6', '83130bde3c9ad991', 'c4b225676e9b7649',
    'aa329b29e08eb499', 'b67fcbd21e577d58', '0027baaada2acf6b', 'e3ef2d5ac73c2226',
    '0890f24d6ed312b7', 'a809e036851d7c7e', 'f0a6fe5e0013d81b', '1d026304452cec14',
    '03864632648e248f', 'cdaacf3dcd92b9b4', 'f5e012e63c187856', '8862f9d3821c00b6',
    'a82f7338750f6f8a', '1e583dc6c1cb0b6f', '7a3145b69743a7f1', 'abb20fee404807eb',
    'b14b3cfe07b83a5d', 'b9dc27898adb9a0f', '3703f5e91baa62be', 'cf0bb866815f7d98',
    '3d9867c41ea9dcd3', '1be1fa65442bf22c', '14300da4c55631d9', 'e698e9cbc6545c99',
    '4763107ec64e92a5', 'c65821fc65696a24', '76196c064822f0b7', '485be841f3525e01',
    'f652bc9c85974ff5', 'cad8352face9e3e9', '2a6ed1dceb35e98e', 'c6f483badc11680f',
    '3cfd8c17e9cf12f1', '89b83c5e2ea56471', 'ae665cfd24e392a9', 'ec33c4e504cb8915',
    '3fb9b15fc9fe7451', 'd7fd1fd1945f2195', '31ade0853443efd8', '255efc9863e1e2d2',
    '10eab6008d5642cf', '46f04863257ac804', 'a52dc42a789a27d3', 'daaadf9ce77af565',
    '6b479cd53d87febb', '6309e2d3f93db72f', 'c5738ffbaa1ff9d6', '6bd57f3f25af7968',
    '67605486d90d0a4a', 'e14d0b9663bfbdae', 'b7bbd8d816eb0414', 'def8a4f16b35a116',
    'e7932d85aaaffed6', '08161cbae90cfd48', '855507beb294f08b', '91234ea6ffd399b2',
    'ad70cf4b2435f302', 'd289a97565bc2d27', '8e558437ffca99de', '96d2704b7115c040',
    '0889bbcdfc660e41', '5e0d4e67dc92128d', '72a9f8917063ed97', '438b69d409e016e3',
    'df4fed8a5d8a4397', '00f41dcf41d403f7', '4814eb038e52603f', '9dafbacc58e2d651',
    'fe2f458e4be170af', '4457ec414df6a940', '06e62f1451123314', 'bd1014d173ba92cc',
    'def318e25ed57760', '9fea0de9dfca8525', '459de1e76c20624b', 'aeec189617e2d666',
    '126a2c06ab5a83cb', 'b1321532360f6132', '65421503dbb40123', '2d67c287ea089ab3',
    '6c93bff5a56bd6b6', '4ffb2036cab6d98d', 'ce7b785b1be7ad4f', 'edb42ef6189fd163',
    'dc905288703988f6', '365f9c1d2c691884', 'c640583680d99bfe', '3cd4624c07593ec6',
    '7f1ea8d85d7c5805', '014842d480b57149', '0b649bcb5a828688', 'bcd5708ed79b18f0',
    'e987c862fbd2f2f0', '982731671f0cd82c', 'baf13e8b16d8c063', '8ea3109cbd951bba',
    'd141045bfb385cad', '2acbc1a0af1f7d30', 'e6444d89df03bfdf', 'a18cc771b8188ff9',
    '9834429db01c39bb', '214add07fe086a1f', '8f07c19b1f6b3ff9', '56a297b1bf4ffe55',
    '94d558e493c54fc7', '40bfc24c764552cb', '931a706f8a8520cb', '32229d322935bd52',
    '2560d0f5dc4fefaf', '9dbcc48355969bb6', '0fd81c3985c0b56a', 'e03817e1560f2bda',
    'c1bb4f81d892b2d5', 'b0c4864f4e28d2d7', '3ecc49f9d9d6c263', '51307e99b52ba65e',
    '8af2b688da84a752', 'f5d72523b91b20b6', '6d95ff1ff4634806', '562f21555458339a',
    'c0ce47f889336346', '487823e5089b40d8', 'e4727c7ebc6d9592', '5a8f7277e94970ba',
    'fca2f406b1c8bb50', '5b1f8a95f1791070', 'd304af9fc9028605', '5440ab7fc930e748',
    '312d25fbca2ab5a1', '10f4a4b234a4d575', '90301d55047e7473', '3b6372886c61591e',
    '293402b77c444e06', '451f34a4d3e97dd7', '3158d814d81bc57b', '034942425b9bda69',
    'e2032ff9e532d9bb', '62ae066b8b2179e5', '9545e10c2f8d71d8', '7ff7483eb2d23fc0',
    '00945fcebdc98d86', '8764bbbe99b26ca2', '1b1ec62284c0bfc3', '58e0fcc4f0aa362b',
    '5f4abefa878d458d', 'fd74ac2f9607c519', 'a4e3fb37df8cbfa9', 'bf697e43cac574e5',
    '86f14a3f68f4cd53', '24a23d076f1ce522', 'e725cd8048868cc8', 'bf3c729eb2464362',
    'd8f6cd57b3cc1ed8', '6329e52425541577', '62aa688ad5ae1ac0', '0a242566269bf845',
    '168b1a4753aca74b', 'f789afefff2e7e3c', '6c3362093b6fccdb', '4ce8f50bd28c09b2',
    '006a2db95ae8aa93', '975b0d623c3d1a8c', '18605d3935338c5b', '5bb6f6136cad3c71',
    '0f53a20701f8d8a6', 'ab8c5ad2e7e93c67', '40b5ac5127acaa29', '8c7bf63c2075895f',
    '78bd9f7e014a805c', 'b2c9e9f4f9c8c032', 'efd6049827eb91f3', '2be459f482c16fbd',
    'd92ce0c5745aaa8c', '0aaa8fb298d965b9', '2b37f92c6c803b15', '8c54a5e94e0f0e78',
    '95f9b6e90c0a3032', 'e7939faa436c7874', 'd16bfe8f6a8a40c9', '44982b86263fd2fa',
    'e285fb39f984e583', '779a8df72d7619d3', 'f2d79a8de8d5dd1e', 'd1037354d66684e2',
    '004c82a4e668a8e5', '31d40a7668b044e6', 'd70578538bd02c11', 'db45431078c5f482',
    '977121bb7f6a51ad', '73d5ccbd34eff8dd', 'e437a07d356e17cd', '47b2782043c95627',
    '9fb251413e41d49a', 'ccd70b60652513d3', '1c95b31e8a1b49b2', 'cae73dfd1bcb4c1b',
    '34d98331b1f5b70f', '784e39f22338d92f', '18613d4a064df420', 'f1d8dae25f0bcebe',
    '33f77c15ae855efc', '3c88b3b912eb109c', '956a2ec96bafeea5', '1aa005b5e0ad0e87',
    '5500d70527c4bb8e', 'e36c57196421cc44', '13c4d286cc36ee39', '5654a23d818b2a81',
    '77b1dc13d161abdc', '734f44de5f8d5eb5', '60717e174a6c89a2', 'd47d9649266a211e',
    '5b13a4322bb69e90', 'f7669609f8b5fc3c', '21e6ac55bedcdac9', '9b56b62b61166dea',
    'f48f66b939797e9c', '35f332f9c0e6ae9a', 'cc733f6a9a878db0', '3da161e41cc108c2',
    'b7d74ae535914d51', '4d493b0b11d36469', 'ce264d1dfba9741a', 'a9d1f2dc7436dc06',
    '70738016604c2a27', '231d36e96e93f3d5', '7666881197838d19', '4a2a83090aaad40c',
    'f1e761591668b35d', '7363236497f730a7', '301080e37379dd4d', '502dea2971827042',
    'c2c5eb858f32625f', '786afb9edfafbdff', 'daee0d868490b2a4', '617366b3268609f6',
    'ae0e35a0fe46173e', 'd1a07de93e824f11', '079b8b115ea4cca8', '93a99274558faebb',
    'fb1e6e22e08a03b3', 'ea635fdba3698dd0', 'cf53659328503a5c', 'cde3b31e6fd5d780',
    '8e3e4221d3614413', 'ef14d0d86bf1a22c', 'e1d830d3f16c5ddb', 'aabd2b2a451504e1',
  ];
  // Masks for each number of bits (the crate's MASKS; 0..4 are padding).
  const MASKS = [
    '0000000000000000',
    '0000000000000000',
    '0000000000000000',
    '0000000000000000',
    '0000000000000000',
    '0000000001804110',
    '0000000001803110',
    '0000000018035100',
    '0000001800035300',
    '0000019000353000',
    '0000590003530000',
    '0000d90003530000',
    '0000d90103530000',
    '0000d90303530000',
    '0000d90313530000',
    '0000d90f03530000',
    '0000d90303537000',
    '0000d90703537000',
    '0000d90707537000',
    '0000d91707537000',
    '0000d91747537000',
    '0000d91767537000',
    '0000d93767537000',
    '0000d93777537000',
    '0000d93777577000',
    '0000db3777577000',
  ];

  const GEAR_HI = new Uint32Array(256);
  const GEAR_LO = new Uint32Array(256);
  GEAR.forEach((hex, i) => {
    GEAR_HI[i] = parseInt(hex.slice(0, 8), 16);
    GEAR_LO[i] = parseInt(hex.slice(8), 16);
  });

  // The crate's limits on the sizes.
  const LIMITS = { min: [64, 1048576], avg: [256, 4194304], max: [1024, 16777216] };

  /** Chunk sizes with the level-1 masks derived from them (as the server's /api/chunking gives them). */
  function params(min, avg, max) {
    for (const [name, v] of Object.entries({ min, avg, max })) {
      const [lo, hi] = LIMITS[name];
      if (!Number.isInteger(v) || v < lo || v > hi) throw new RangeError(`chunker ${name} ${v} outside [${lo}, ${hi}]`);
    }
    if (!(min < avg && avg < max)) throw new RangeError(`chunker sizes need min < avg < max, got ${min} / ${avg} / ${max}`);
    const bits = Math.round(Math.log2(avg));
    const half = (hex) => [parseInt(hex.slice(0, 8), 16), parseInt(hex.slice(8), 16)];
    const [sHi, sLo] = half(MASKS[bits + 1]);
    const [lHi, lLo] = half(MASKS[bits - 1]);
    return { min, avg, max, sHi, sLo, lHi, lLo };
  }

  /**
   * Cuts `buf` (a Uint8Array starting at a chunk boundary) into chunks.
   * Returns { lengths, used }: the chunk lengths and the bytes they cover.
   * Unless `eof`, a cut is only looked for while at least `max` bytes
   * remain, so the caller carries the rest (fewer than `max` bytes) into
   * the next block: FastCDC never looks further than `max` ahead, so the
   * cuts are those of the whole input at once.
   */
  function cutBlock(buf, p, eof) {
    const n = buf.length;
    const lengths = [];
    const halfMin = p.min - (p.min % 2);
    const { sHi, sLo, lHi, lLo } = p;
    let c = 0;
    while (c < n) {
      const rem = n - c;
      if (rem < p.max && !eof) break;
      if (rem <= p.min) {
        lengths.push(rem);
        c += rem;
        continue;
      }
      let center = p.avg;
      let limit = rem;
      if (limit > p.max) limit = p.max;
      else if (limit < center) center = limit;
      const sEnd = c + center - (center % 2);
      const lEnd = c + limit - (limit % 2);
      let hi = 0;
      let lo = 0;
      let cut = -1;
      let q = c + halfMin;
      for (; q < sEnd; q++) {
        const b = buf[q];
        const l = ((lo << 1) >>> 0) + GEAR_LO[b];
        hi = (((hi << 1) | (lo >>> 31)) + GEAR_HI[b] + (l > 0xffffffff ? 1 : 0)) >>> 0;
        lo = l >>> 0;
        if ((hi & sHi) === 0 && (lo & sLo) === 0) {
          cut = q;
          break;
        }
      }
      if (cut < 0) {
        for (; q < lEnd; q++) {
          const b = buf[q];
          const l = ((lo << 1) >>> 0) + GEAR_LO[b];
          hi = (((hi << 1) | (lo >>> 31)) + GEAR_HI[b] + (l > 0xffffffff ? 1 : 0)) >>> 0;
          lo = l >>> 0;
          if ((hi & lHi) === 0 && (lo & lLo) === 0) {
            cut = q;
            break;
          }
        }
      }
      const length = cut >= 0 ? cut - c : limit;
      lengths.push(length);
      c += length;
    }
    return { lengths, used: c };
  }

  /** Chunk lengths of a whole in-memory input. */
  function chunkLengths(buf, p) {
    return cutBlock(buf, p, true).lengths;
  }

  const api = { params, cutBlock, chunkLengths };
  if (typeof module === 'object' && module.exports) module.exports = api;
  else root.DepotChunker = api;
})(typeof self !== 'undefined' ? self : this);

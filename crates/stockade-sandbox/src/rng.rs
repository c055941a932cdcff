//! A small seeded PRNG (splitmix64) and generators of realistic buyer data.

/// splitmix64: tiny, fast, and fully determined by its seed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// One element of a non-empty slice.
    pub fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        let i = self.below(items.len() as u64) as usize;
        items.get(i).copied().unwrap_or("")
    }

    /// `n` decimal digits, the first one non-zero.
    pub fn digits(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n);
        for i in 0..n {
            let d = if i == 0 {
                self.range(1, 9)
            } else {
                self.below(10)
            };
            s.push(char::from(b'0' + d as u8));
        }
        s
    }

    /// `n` characters from `alphabet`.
    pub fn chars(&mut self, n: usize, alphabet: &[u8]) -> String {
        (0..n)
            .map(|_| {
                let i = self.below(alphabet.len() as u64) as usize;
                char::from(alphabet.get(i).copied().unwrap_or(b'X'))
            })
            .collect()
    }

    /// A random UUID-shaped string (version 4 layout).
    pub fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            ((b >> 48) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }
}

/// A generated buyer: every field is personal data.
#[derive(Debug, Clone)]
pub(crate) struct Person {
    pub first: String,
    pub last: String,
    pub email: String,
    pub phone: String,
    pub line1: String,
    pub line2: String,
    pub city: String,
    pub region: String,
    pub postal: String,
    pub country: String,
}

impl Person {
    pub fn full_name(&self) -> String {
        if self.country == "CN" || self.country == "JP" {
            format!("{}{}", self.last, self.first)
        } else {
            format!("{} {}", self.first, self.last)
        }
    }
}

struct Locale {
    country: &'static str,
    first: &'static [&'static str],
    last: &'static [&'static str],
    streets: &'static [&'static str],
    cities: &'static [(&'static str, &'static str)],
}

const LOCALES: &[Locale] = &[
    Locale {
        country: "US",
        first: &[
            "James", "Mary", "Robert", "Patricia", "Michael", "Linda", "José", "Aaliyah", "Nguyen",
            "Zoë",
        ],
        last: &[
            "Smith",
            "Johnson",
            "Williams",
            "Garcia",
            "O'Brien",
            "Martínez",
            "Lee",
            "Washington",
        ],
        streets: &[
            "Main St",
            "Oak Ave",
            "Maple Dr",
            "Sunset Blvd",
            "Elm St",
            "Lakeview Rd",
        ],
        cities: &[
            ("Austin", "TX"),
            ("Seattle", "WA"),
            ("Brooklyn", "NY"),
            ("Columbus", "OH"),
            ("San Jose", "CA"),
        ],
    },
    Locale {
        country: "GB",
        first: &["Oliver", "Amelia", "Harry", "Isla", "Siobhán", "Rhys"],
        last: &[
            "Taylor",
            "Davies",
            "Evans",
            "Wright",
            "MacDonald",
            "Ó Briain",
        ],
        streets: &[
            "High Street",
            "Station Road",
            "Church Lane",
            "Victoria Road",
        ],
        cities: &[
            ("Manchester", "Greater Manchester"),
            ("Leeds", "West Yorkshire"),
            ("Cardiff", "Wales"),
        ],
    },
    Locale {
        country: "DE",
        first: &["Lukas", "Sophie", "Jürgen", "Männe", "Lena", "Björn"],
        last: &["Müller", "Schmidt", "Schäfer", "Weiß", "Groß"],
        streets: &[
            "Hauptstraße",
            "Bahnhofstraße",
            "Schillerstraße",
            "Gartenweg",
        ],
        cities: &[
            ("München", "Bayern"),
            ("Köln", "Nordrhein-Westfalen"),
            ("Leipzig", "Sachsen"),
        ],
    },
    Locale {
        country: "CN",
        first: &["芳", "伟", "娜", "秀英", "敏", "静"],
        last: &["王", "李", "张", "刘", "陈"],
        streets: &["建国路", "人民路", "中山路", "解放大道"],
        cities: &[("上海", "上海市"), ("深圳", "广东省"), ("杭州", "浙江省")],
    },
    Locale {
        country: "JP",
        first: &["翔太", "さくら", "Haruto", "Yui"],
        last: &["佐藤", "鈴木", "Takahashi", "Tanaka"],
        streets: &["1-2-3 Shibuya", "4-5-6 Umeda", "7-8 Sakae"],
        cities: &[("Tokyo", "Tokyo"), ("Osaka", "Osaka"), ("Nagoya", "Aichi")],
    },
    Locale {
        country: "FR",
        first: &["Léa", "Hugo", "Chloé", "Maël", "François"],
        last: &["Martin", "Bernard", "Lefèvre", "Dubois", "Girard"],
        streets: &["rue de la Paix", "avenue Jean Jaurès", "boulevard Voltaire"],
        cities: &[
            ("Lyon", "Auvergne-Rhône-Alpes"),
            ("Nantes", "Pays de la Loire"),
            ("Lille", "Hauts-de-France"),
        ],
    },
];

const EMAIL_DOMAINS: &[&str] = &[
    "example.com",
    "mail.example.org",
    "post.example.net",
    "例子.example",
];

impl SplitMix64 {
    /// A buyer from one of several countries; `us_share` of them from the US.
    pub(crate) fn person(&mut self, us_share: f64) -> Person {
        let locale = if self.chance(us_share) {
            &LOCALES[0]
        } else {
            let i = self.below(LOCALES.len() as u64) as usize;
            &LOCALES[i.min(LOCALES.len() - 1)]
        };
        let first = self.pick(locale.first).to_owned();
        let last = self.pick(locale.last).to_owned();
        let ci = self.below(locale.cities.len() as u64) as usize;
        let (city, region) = locale.cities.get(ci).copied().unwrap_or(("", ""));
        let street = self.pick(locale.streets);
        let line1 = match locale.country {
            "DE" => format!("{street} {}", self.range(1, 180)),
            "FR" => format!("{} {street}", self.range(1, 120)),
            "CN" => format!("{street}{}号", self.range(1, 999)),
            "JP" => street.to_owned(),
            _ => format!("{} {street}", self.range(1, 9999)),
        };
        let line2 = if self.chance(0.3) {
            match locale.country {
                "CN" => format!("{}栋{}室", self.range(1, 30), self.range(101, 2808)),
                "DE" => format!("Wohnung {}", self.range(1, 40)),
                _ => format!("Apt {}", self.range(1, 999)),
            }
        } else {
            String::new()
        };
        let postal = match locale.country {
            "US" => format!("{:05}", self.range(1001, 99950)),
            "GB" => format!(
                "{}{} {}{}",
                self.chars(2, b"ABCDEFGHJKLMNOPRSTUWYZ"),
                self.range(1, 20),
                self.range(1, 9),
                self.chars(2, b"ABDEFGHJLNPQRSTUWXYZ")
            ),
            "DE" | "FR" => format!("{:05}", self.range(1067, 99998)),
            "CN" => format!("{:06}", self.range(100000, 850000)),
            "JP" => format!("{:03}-{:04}", self.range(100, 999), self.below(10000)),
            _ => self.digits(5),
        };
        let phone = match locale.country {
            "US" => format!(
                "+1 {}{}-555-{:04}",
                self.range(2, 9),
                self.digits(2),
                self.below(10000)
            ),
            "GB" => format!("+44 7700 {}", self.digits(6)),
            "DE" => format!("+49 15{} {}", self.range(1, 9), self.digits(8)),
            "CN" => {
                let prefix = self.pick(&["130", "135", "138", "139", "150", "186", "199"]);
                format!("+86 {prefix} {} {}", self.digits(4), self.digits(4))
            }
            "JP" => format!("+81 90-{}-{}", self.digits(4), self.digits(4)),
            "FR" => format!(
                "+33 6 {} {} {} {}",
                self.digits(2),
                self.digits(2),
                self.digits(2),
                self.digits(2)
            ),
            _ => format!("+{}", self.digits(11)),
        };
        let local_part: String = first
            .chars()
            .chain(std::iter::once('.'))
            .chain(last.chars())
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect::<String>()
            .to_lowercase();
        let local_part = if local_part.len() < 3 {
            format!("buyer{}", self.digits(6))
        } else {
            format!("{local_part}{}", self.below(1000))
        };
        let email = format!("{local_part}@{}", self.pick(EMAIL_DOMAINS));
        Person {
            first,
            last,
            email,
            phone,
            line1,
            line2,
            city: city.to_owned(),
            region: region.to_owned(),
            postal,
            country: locale.country.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_deterministic_and_matches_reference() {
        // Reference value for seed 0 (splitmix64 by Vigna).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn people_look_plausible() {
        let mut r = SplitMix64::new(1);
        for _ in 0..200 {
            let p = r.person(0.5);
            assert!(p.email.contains('@'));
            assert!(p.phone.starts_with('+'));
            assert!(!p.line1.is_empty());
            assert_eq!(p.country.len(), 2);
        }
    }
}

//! Marketplace state in memory: the app, sellers, listings, orders, tokens.

use std::collections::HashMap;

use stockade_core::order::Marketplace;

use crate::rng::{Person, SplitMix64};
use crate::{OrderAction, OrderState};

pub(crate) const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
pub(crate) const UPPER_NUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

#[derive(Debug, Clone)]
pub(crate) struct App {
    pub client_id: String,
    pub client_secret: String,
    pub application_id: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Seller {
    pub id: String,
    pub name: String,
    pub cipher: String,
    pub user_id: String,
    pub eias_token: String,
    pub region: String,
    pub marketplace_id: String,
    pub revoked: bool,
    pub refresh_token: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Listing {
    pub seller: usize,
    pub sku: String,
    pub title: String,
    pub quantity: u32,
    pub price_cents: u32,
    pub product_id: String,
    pub sku_id: String,
    pub warehouse_id: String,
    pub product_type: String,
    pub asin: String,
    pub offer_id: String,
    pub listing_id: String,
    pub revision_day: i64,
    pub revisions: u32,
    pub updated_ms: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub id: String,
    pub listing: usize,
    pub quantity: u32,
    /// TikTok: one line item id per unit.
    pub unit_ids: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Order {
    pub id: String,
    pub legacy_id: String,
    pub seq: u64,
    pub seller: usize,
    pub state: OrderState,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub buyer: Person,
    pub buyer_user_id: String,
    pub buyer_username: String,
    pub lines: Vec<Line>,
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    /// None: an application (grantless / client-credentials) token.
    pub seller: Option<usize>,
    pub scopes: Vec<String>,
    pub expires_ms: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Code {
    pub seller: usize,
    pub expires_ms: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct FeedDoc {
    pub seller: usize,
    pub content_type: String,
    pub url_key: String,
    pub url_expires_ms: i64,
    pub content: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Feed {
    pub id: String,
    pub seller: usize,
    pub feed_type: String,
    pub marketplace_ids: Vec<String>,
    pub input_doc: String,
    pub created_ms: i64,
    pub status: &'static str,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub result_doc: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Market {
    pub kind: Marketplace,
    pub app: App,
    pub sellers: Vec<Seller>,
    pub listings: Vec<Listing>,
    pub listing_index: HashMap<(usize, String), usize>,
    pub orders: Vec<Order>,
    pub order_index: HashMap<String, usize>,
    pub tokens: HashMap<String, Token>,
    pub refresh_tokens: HashMap<String, usize>,
    pub codes: HashMap<String, Code>,
    pub docs: HashMap<String, FeedDoc>,
    pub feeds: Vec<Feed>,
    /// Amazon: buyers' returns and requested reports (`amazon_reports`).
    pub returns: Vec<crate::amazon_reports::AmzReturn>,
    pub reports: Vec<crate::amazon_reports::AmzReport>,
    pub rng: SplitMix64,
    pub seq: u64,
    pub last_ms: i64,
    pub webhook: Option<String>,
    pub ebay_verified: bool,
    /// Every change of a listing's displayed quantity (see `qty_history`).
    pub qty_history: crate::qty_history::QtyHistory,
}

/// Population parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Population {
    pub sellers: usize,
    pub skus: usize,
    pub quantity: u32,
}

pub(crate) const EBAY_USER_SCOPES: &[&str] = &[
    "https://api.ebay.com/oauth/api_scope",
    "https://api.ebay.com/oauth/api_scope/sell.fulfillment",
    "https://api.ebay.com/oauth/api_scope/sell.inventory",
    "https://api.ebay.com/oauth/api_scope/commerce.notification.subscription",
];

const PRODUCTS: &[&str] = &[
    "Canvas Tote Bag",
    "Ceramic Pour-Over Set",
    "Merino Wool Beanie",
    "Bamboo Cutting Board",
    "Wireless Earbuds Case",
    "Linen Throw Pillow",
    "Stainless Water Bottle 750ml",
    "Hand-poured Soy Candle",
    "Leather Card Holder",
    "Organic Cotton T-Shirt",
];

impl Market {
    pub fn new(kind: Marketplace, seed: u64, pop: Population, now: i64) -> Market {
        let mut rng = SplitMix64::new(seed ^ (kind as u64 + 1).wrapping_mul(0x1234_5678_9ABC));
        let app = match kind {
            Marketplace::TikTok => App {
                client_id: format!(
                    "6{}",
                    rng.chars(12, b"abcdefghijklmnopqrstuvwxyz0123456789")
                ),
                client_secret: hex::encode(rng.next_u64().to_be_bytes())
                    + &hex::encode(rng.next_u64().to_be_bytes())
                    + &hex::encode(rng.next_u64().to_be_bytes()),
                application_id: String::new(),
            },
            Marketplace::Amazon => App {
                client_id: format!(
                    "amzn1.application-oa2-client.{}",
                    hex::encode(rng.next_u64().to_be_bytes())
                        + &hex::encode(rng.next_u64().to_be_bytes())
                ),
                client_secret: format!(
                    "amzn1.oa2-cs.v1.{}",
                    hex::encode(rng.next_u64().to_be_bytes())
                        + &hex::encode(rng.next_u64().to_be_bytes())
                        + &hex::encode(rng.next_u64().to_be_bytes())
                        + &hex::encode(rng.next_u64().to_be_bytes())
                ),
                application_id: format!("amzn1.sp.solution.{}", rng.uuid()),
            },
            Marketplace::Ebay => App {
                client_id: format!(
                    "Stockade-Sandbox-PRD-{}-{}",
                    rng.chars(9, b"0123456789abcdef"),
                    rng.chars(8, b"0123456789abcdef")
                ),
                client_secret: format!(
                    "PRD-{}-{}-{}-{}",
                    rng.chars(12, b"0123456789abcdef"),
                    rng.chars(8, b"0123456789abcdef"),
                    rng.chars(4, b"0123456789abcdef"),
                    rng.chars(4, b"0123456789abcdef")
                ),
                application_id: String::new(),
            },
        };
        let mut market = Market {
            kind,
            app,
            sellers: Vec::new(),
            listings: Vec::new(),
            listing_index: HashMap::new(),
            orders: Vec::new(),
            order_index: HashMap::new(),
            tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            codes: HashMap::new(),
            docs: HashMap::new(),
            feeds: Vec::new(),
            returns: Vec::new(),
            reports: Vec::new(),
            rng,
            seq: 0,
            last_ms: now,
            webhook: None,
            ebay_verified: false,
            qty_history: crate::qty_history::QtyHistory::default(),
        };
        for s in 0..pop.sellers.max(1) {
            market.add_seller(s);
            for k in 0..pop.skus {
                market.add_listing(s, k, pop.quantity, now);
            }
        }
        market
    }

    fn add_seller(&mut self, n: usize) {
        let rng = &mut self.rng;
        let (id, name, cipher, region, marketplace_id) = match self.kind {
            Marketplace::TikTok => (
                rng.digits(19),
                format!("Sandbox Shop {}", n + 1),
                format!("ROW_{}", rng.chars(22, ALNUM)),
                "US".to_owned(),
                String::new(),
            ),
            Marketplace::Amazon => (
                format!("A{}", rng.chars(13, UPPER_NUM)),
                format!("Sandbox Seller {}", n + 1),
                String::new(),
                "NA".to_owned(),
                "ATVPDKIKX0DER".to_owned(),
            ),
            Marketplace::Ebay => (
                format!("sandbox_seller_{}", n + 1),
                format!("sandbox_seller_{}", n + 1),
                String::new(),
                "US".to_owned(),
                "EBAY_US".to_owned(),
            ),
        };
        let user_id = rng.chars(11, ALNUM);
        let eias_token = format!("nY+sHZ2PrBmdj6wVnY+sEZ2PrA2dj6w{}==", rng.chars(20, ALNUM));
        let scopes = match self.kind {
            Marketplace::Ebay => EBAY_USER_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            _ => Vec::new(),
        };
        self.sellers.push(Seller {
            id,
            name,
            cipher,
            user_id,
            eias_token,
            region,
            marketplace_id,
            revoked: false,
            refresh_token: String::new(),
            scopes,
        });
        let idx = self.sellers.len() - 1;
        let rt = self.new_refresh_token();
        self.refresh_tokens.insert(rt.clone(), idx);
        if let Some(s) = self.sellers.get_mut(idx) {
            s.refresh_token = rt;
        }
    }

    fn add_listing(&mut self, seller: usize, k: usize, quantity: u32, now: i64) {
        let rng = &mut self.rng;
        let title = format!(
            "{} #{}",
            PRODUCTS.get(k % PRODUCTS.len()).copied().unwrap_or("Item"),
            k / PRODUCTS.len() + 1
        );
        // Two variants (SKUs) per product, as TikTok models them.
        let product_id = match self.listings.last() {
            Some(prev) if k % 2 == 1 && prev.seller == seller => prev.product_id.clone(),
            _ => format!("17{}", rng.digits(17)),
        };
        let listing = Listing {
            seller,
            sku: format!("SKU-{:04}", k + 1),
            title,
            quantity,
            price_cents: rng.range(499, 14_999) as u32,
            product_id,
            sku_id: format!("17{}", rng.digits(17)),
            warehouse_id: format!("70{}", rng.digits(17)),
            product_type: "PRODUCT".to_owned(),
            asin: format!("B0{}", rng.chars(8, UPPER_NUM)),
            offer_id: rng.digits(11),
            listing_id: format!("11{}", rng.digits(10)),
            revision_day: 0,
            revisions: 0,
            updated_ms: now,
        };
        self.listing_index
            .insert((seller, listing.sku.clone()), self.listings.len());
        self.qty_history.record(
            self.listings.len(),
            now,
            quantity,
            crate::qty_history::QtySource::Direct,
        );
        self.listings.push(listing);
    }

    pub fn new_refresh_token(&mut self) -> String {
        match self.kind {
            Marketplace::TikTok => format!("ROW_{}", self.rng.chars(60, ALNUM)),
            Marketplace::Amazon => format!("Atzr|{}", self.rng.chars(300, ALNUM)),
            Marketplace::Ebay => {
                format!("v^1.1#i^1#r^1#f^0#I^3#p^3#t^{}", self.rng.chars(120, ALNUM))
            }
        }
    }

    pub fn new_access_token(&mut self) -> String {
        match self.kind {
            Marketplace::TikTok => format!("ROW_{}", self.rng.chars(60, ALNUM)),
            Marketplace::Amazon => format!("Atza|{}", self.rng.chars(300, ALNUM)),
            Marketplace::Ebay => {
                format!("v^1.1#i^1#p^3#r^0#I^3#f^0#t^{}", self.rng.chars(200, ALNUM))
            }
        }
    }

    /// Issue an access token valid for `ttl_ms`.
    pub fn issue_token(
        &mut self,
        seller: Option<usize>,
        scopes: Vec<String>,
        now: i64,
        ttl_ms: i64,
    ) -> String {
        // Drop expired tokens now and then so the map stays small.
        if self.tokens.len() > 10_000 {
            self.tokens.retain(|_, t| t.expires_ms > now);
        }
        let token = self.new_access_token();
        self.tokens.insert(
            token.clone(),
            Token {
                seller,
                scopes,
                expires_ms: now + ttl_ms,
            },
        );
        token
    }

    /// A fresh single-use authorization code for `seller`.
    pub fn issue_code(&mut self, seller: usize, now: i64, ttl_ms: i64) -> String {
        let code = match self.kind {
            Marketplace::Amazon => self.rng.chars(20, ALNUM),
            Marketplace::TikTok => format!("ROW_{}", self.rng.chars(40, ALNUM)),
            Marketplace::Ebay => {
                format!("v^1.1#i^1#f^0#p^3#r^1#I^3#t^{}", self.rng.chars(80, ALNUM))
            }
        };
        self.codes.insert(
            code.clone(),
            Code {
                seller,
                expires_ms: now + ttl_ms,
            },
        );
        code
    }

    /// A time for a new event: now, but strictly after the previous one.
    pub fn tick(&mut self, now: i64) -> i64 {
        self.last_ms = now.max(self.last_ms + 1);
        self.last_ms
    }

    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn seller_index(&self, id: &str) -> Option<usize> {
        self.sellers.iter().position(|s| s.id == id)
    }

    pub fn listing(&self, seller: usize, sku: &str) -> Option<usize> {
        self.listing_index.get(&(seller, sku.to_owned())).copied()
    }

    /// Revoke a seller: every token and refresh token stops working.
    pub fn revoke(&mut self, seller: usize) {
        if let Some(s) = self.sellers.get_mut(seller) {
            s.revoked = true;
        }
        self.tokens.retain(|_, t| t.seller != Some(seller));
        self.refresh_tokens.retain(|_, s| *s != seller);
        self.codes.retain(|_, c| c.seller != seller);
    }

    /// Re-authorize a revoked seller with a new refresh token.
    pub fn reauthorize(&mut self, seller: usize) -> Option<String> {
        let rt = self.new_refresh_token();
        let s = self.sellers.get_mut(seller)?;
        s.revoked = false;
        s.refresh_token = rt.clone();
        self.refresh_tokens.insert(rt.clone(), seller);
        Some(rt)
    }

    /// Generate up to `n` orders; returns the indices of the new orders. Buyers only buy
    /// what a listing displays; each sale decrements it. Stops early when stock runs out.
    pub fn generate(&mut self, n: usize, now: i64, us_share: f64) -> Vec<usize> {
        let mut made = Vec::new();
        for _ in 0..n {
            let seller = self.rng.below(self.sellers.len() as u64) as usize;
            let sellers: Vec<usize> = std::iter::once(seller)
                .chain((0..self.sellers.len()).filter(|s| *s != seller))
                .filter(|s| self.sellers.get(*s).is_some_and(|x| !x.revoked))
                .collect();
            let mut placed = None;
            for s in sellers {
                if let Some(i) = self.place_order(s, now, us_share) {
                    placed = Some(i);
                    break;
                }
            }
            match placed {
                Some(i) => made.push(i),
                None => break,
            }
        }
        made
    }

    fn place_order(&mut self, seller: usize, now: i64, us_share: f64) -> Option<usize> {
        let available: Vec<usize> = self
            .listings
            .iter()
            .enumerate()
            .filter(|(_, l)| l.seller == seller && l.quantity > 0)
            .map(|(i, _)| i)
            .collect();
        if available.is_empty() {
            return None;
        }
        let want = (self.rng.range(1, 3) as usize).min(available.len());
        let mut chosen: Vec<usize> = Vec::new();
        while chosen.len() < want {
            let i = available
                .get(self.rng.below(available.len() as u64) as usize)
                .copied()?;
            if !chosen.contains(&i) {
                chosen.push(i);
            }
        }
        let at = self.tick(now);
        let seq = self.next_seq();
        let mut lines = Vec::new();
        for li in chosen {
            let displayed = self.listings.get(li).map(|l| l.quantity).unwrap_or(0);
            let q = (self.rng.range(1, 3) as u32).min(displayed);
            if q == 0 {
                continue;
            }
            if let Some(l) = self.listings.get_mut(li) {
                l.quantity -= q;
                l.updated_ms = at;
                self.qty_history
                    .record(li, at, l.quantity, crate::qty_history::QtySource::Buyer);
            }
            let (id, unit_ids) = match self.kind {
                Marketplace::TikTok => {
                    let units: Vec<String> = (0..q)
                        .map(|_| format!("57{}", self.rng.digits(16)))
                        .collect();
                    (units.first().cloned().unwrap_or_default(), units)
                }
                Marketplace::Amazon => (self.rng.digits(14), Vec::new()),
                Marketplace::Ebay => (format!("1{}", self.rng.digits(10)), Vec::new()),
            };
            lines.push(Line {
                id,
                listing: li,
                quantity: q,
                unit_ids,
            });
        }
        if lines.is_empty() {
            return None;
        }
        let id = self.new_order_id();
        let buyer = self.rng.person(us_share);
        let buyer_user_id = self.rng.digits(19);
        let buyer_username = format!(
            "{}{}",
            buyer
                .first
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_lowercase(),
            self.rng.digits(4)
        );
        let legacy_id = format!("{}-{}", self.rng.digits(12), self.rng.digits(12));
        let order = Order {
            id: id.clone(),
            legacy_id,
            seq,
            seller,
            state: OrderState::Placed,
            created_ms: at,
            updated_ms: at,
            buyer,
            buyer_user_id,
            buyer_username,
            lines,
        };
        self.order_index.insert(id, self.orders.len());
        self.orders.push(order);
        Some(self.orders.len() - 1)
    }

    /// A fresh order id in the marketplace's format. eBay's space (~2.7e11) sees
    /// collisions within a few million orders, so ids already taken are drawn again
    /// (one hash lookup each) rather than overwriting the index.
    fn new_order_id(&mut self) -> String {
        loop {
            let id = match self.kind {
                Marketplace::TikTok => format!("576{}", self.rng.digits(15)),
                Marketplace::Amazon => format!(
                    "{:03}-{:07}-{:07}",
                    self.rng.range(111, 114),
                    self.rng.below(10_000_000),
                    self.rng.below(10_000_000)
                ),
                Marketplace::Ebay => format!(
                    "{:02}-{:05}-{:05}",
                    self.rng.range(1, 27),
                    self.rng.below(100_000),
                    self.rng.below(100_000)
                ),
            };
            if !self.order_index.contains_key(&id) {
                return id;
            }
        }
    }

    /// Apply `action` to an order. Cancelling returns the units to the listing.
    pub fn advance(
        &mut self,
        order: usize,
        action: OrderAction,
        now: i64,
    ) -> Result<OrderState, String> {
        let state = self
            .orders
            .get(order)
            .map(|o| o.state)
            .ok_or_else(|| "no such order".to_owned())?;
        let next = match (state, action) {
            (OrderState::Placed, OrderAction::Ship) => OrderState::Shipped,
            (OrderState::Placed, OrderAction::Cancel) => OrderState::Cancelled,
            (OrderState::Shipped, OrderAction::Deliver) => OrderState::Delivered,
            (OrderState::Delivered, OrderAction::Return) => OrderState::Returned,
            (from, action) => {
                return Err(format!("cannot {action:?} an order that is {from:?}"));
            }
        };
        let at = self.tick(now);
        if next == OrderState::Cancelled {
            let lines: Vec<(usize, u32)> = self
                .orders
                .get(order)
                .map(|o| o.lines.iter().map(|l| (l.listing, l.quantity)).collect())
                .unwrap_or_default();
            for (li, q) in lines {
                if let Some(l) = self.listings.get_mut(li) {
                    l.quantity = l.quantity.saturating_add(q);
                    l.updated_ms = at;
                    self.qty_history.record(
                        li,
                        at,
                        l.quantity,
                        crate::qty_history::QtySource::Cancel,
                    );
                }
            }
        }
        if let Some(o) = self.orders.get_mut(order) {
            o.state = next;
            o.updated_ms = at;
        }
        // Amazon keeps the order SHIPPED and lists the return in its returns report: the
        // buyer returns every unit, Amazon approves, the package reaches the seller.
        if next == OrderState::Returned && self.kind == Marketplace::Amazon {
            crate::amazon_reports::record_return(self, order, None, None, "Approved", true, at)?;
        }
        Ok(next)
    }

    /// Advance up to `n` random orders one step along their lifecycle.
    pub fn advance_random(&mut self, n: usize, now: i64) -> Vec<usize> {
        let open: Vec<usize> = self
            .orders
            .iter()
            .enumerate()
            .filter(|(_, o)| !matches!(o.state, OrderState::Cancelled | OrderState::Returned))
            .map(|(i, _)| i)
            .collect();
        let mut changed = Vec::new();
        if open.is_empty() {
            return changed;
        }
        for _ in 0..n {
            let Some(&i) = open.get(self.rng.below(open.len() as u64) as usize) else {
                break;
            };
            let state = self.orders.get(i).map(|o| o.state);
            let action = match state {
                Some(OrderState::Placed) if self.rng.chance(0.1) => OrderAction::Cancel,
                Some(OrderState::Placed) => OrderAction::Ship,
                Some(OrderState::Shipped) => OrderAction::Deliver,
                Some(OrderState::Delivered) if self.rng.chance(0.05) => OrderAction::Return,
                _ => continue,
            };
            if self.advance(i, action, now).is_ok() {
                changed.push(i);
            }
        }
        changed
    }
}
